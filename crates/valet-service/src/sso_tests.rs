//! The ID token checks, against tokens signed here with a fresh P-256 key whose JWKS the
//! tests build: every check refuses its own bad token with its own message.

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

use super::*;

const ISSUER: &str = "https://id.example.com";
const CLIENT: &str = "valet-upload";
const NONCE: &str = "n-0S6_WzA2Mj";

struct Provider {
    key: EncodingKey,
    keys: JwkSet,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn provider() -> Provider {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let keys: JwkSet = serde_json::from_value(json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]}))
    .unwrap();
    Provider {
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        keys,
    }
}

fn config() -> SsoConfig {
    SsoConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        scopes: default_scopes(),
        username_claim: "email".into(),
        allowed_domains: vec![],
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn good_claims() -> Value {
    let t = now().unix_timestamp();
    json!({
        "iss": ISSUER, "sub": "248289761001", "aud": CLIENT, "exp": t + 300, "iat": t,
        "nonce": NONCE, "email": "Alice.Smith@Example.com", "email_verified": true,
    })
}

impl Provider {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    fn check(&self, config: &SsoConfig, token: &str, nonce: &str) -> Result<Identity, Refusal> {
        check(config, &self.keys, token, nonce, now())
    }
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = good_claims();
    change(claims.as_object_mut().unwrap());
    claims
}

fn refusal(result: Result<Identity, Refusal>) -> String {
    match result {
        Err(Refusal::Token(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_good_token_names_its_subject_and_claim() {
    let p = provider();
    let claims = good_claims();
    let identity = p.check(&config(), &p.sign(&claims), NONCE).unwrap();
    let exp = claims["exp"].as_i64().unwrap() + LEEWAY.as_secs() as i64;
    assert_eq!(
        identity,
        Identity {
            issuer: ISSUER.into(),
            subject: "248289761001".into(),
            name_claim: "Alice.Smith@Example.com".into(),
            expires_at: OffsetDateTime::from_unix_timestamp(exp).unwrap(),
        }
    );
    // Several audiences are fine when azp is us.
    let claims = with(|c| {
        c.insert("aud".into(), json!(["other", CLIENT]));
        c.insert("azp".into(), json!(CLIENT));
    });
    assert!(p.check(&config(), &p.sign(&claims), NONCE).is_ok());
}

#[test]
fn every_check_refuses_with_its_reason() {
    let p = provider();
    let t = now().unix_timestamp();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "another audience",
            with(|c| drop(c.insert("aud".into(), json!("someone-else")))),
            "audience is not this service's client id",
        ),
        (
            "several audiences, azp not us",
            with(|c| drop(c.insert("aud".into(), json!([CLIENT, "other"])))),
            "azp is not this client id",
        ),
        (
            "another issuer",
            with(|c| drop(c.insert("iss".into(), json!("https://evil.example.com")))),
            "issuer is not this service's sign-in provider",
        ),
        (
            "expired",
            with(|c| drop(c.insert("exp".into(), json!(t - 3600)))),
            "has expired",
        ),
        (
            "not yet valid",
            with(|c| drop(c.insert("nbf".into(), json!(t + 3600)))),
            "not valid yet",
        ),
        ("no iat", with(|c| drop(c.remove("iat"))), "no issue time"),
        (
            "no nonce",
            with(|c| drop(c.remove("nonce"))),
            "nonce is not the one of this sign-in",
        ),
        (
            "email not verified",
            with(|c| drop(c.insert("email_verified".into(), json!(false)))),
            "not verified",
        ),
        (
            "no email",
            with(|c| drop(c.remove("email"))),
            "no \"email\" claim",
        ),
        ("no sub", with(|c| drop(c.remove("sub"))), "no subject"),
    ];
    for (case, claims, wanted) in cases {
        let why = refusal(p.check(&config(), &p.sign(&claims), NONCE));
        assert!(why.contains(wanted), "{case}: {why}");
    }
    let why = refusal(p.check(&config(), &p.sign(&good_claims()), "another-nonce"));
    assert!(why.contains("nonce"), "{why}");
}

#[test]
fn only_allowed_domains_sign_in() {
    let p = provider();
    let mut config = config();
    config.allowed_domains = vec!["corp.example".into()];
    let why = refusal(p.check(&config, &p.sign(&good_claims()), NONCE));
    assert!(why.contains("not in a domain this service allows"), "{why}");
    config.allowed_domains.push("EXAMPLE.com".into());
    assert!(p.check(&config, &p.sign(&good_claims()), NONCE).is_ok());
}

#[test]
fn unsigned_symmetric_forged_and_foreign_key_tokens_are_refused() {
    let p = provider();
    let body = b64(good_claims().to_string().as_bytes());
    // alg none, no signature.
    let none = format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let why = refusal(p.check(&config(), &none, NONCE));
    assert!(why.contains("only asymmetric algorithms"), "{why}");
    // HS256 "signed" with the public client id as the secret.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &EncodingKey::from_secret(CLIENT.as_bytes()),
    )
    .unwrap();
    let why = refusal(p.check(&config(), &hs, NONCE));
    assert!(why.contains("only asymmetric algorithms"), "{why}");
    // Claims changed after signing.
    let good = p.sign(&good_claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_body = b64(with(|c| drop(c.insert("sub".into(), json!("admin"))))
        .to_string()
        .as_bytes());
    parts[1] = &forged_body;
    let why = refusal(p.check(&config(), &parts.join("."), NONCE));
    assert!(why.contains("signature does not verify"), "{why}");
    // Signed by another key with the same kid.
    let stranger = provider();
    let why = refusal(p.check(&config(), &stranger.sign(&good_claims()), NONCE));
    assert!(why.contains("signature does not verify"), "{why}");
    // A kid the provider does not publish.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k9".into());
    let unknown = jsonwebtoken::encode(&header, &good_claims(), &p.key).unwrap();
    let why = refusal(p.check(&config(), &unknown, NONCE));
    assert!(why.contains("does not publish"), "{why}");
    let why = refusal(p.check(&config(), "not a token", NONCE));
    assert!(
        why.contains("not readable") || why.contains("not a JWT"),
        "{why}"
    );
}

#[test]
fn account_names_are_valid_user_names() {
    assert_eq!(
        account_name("Alice.Smith@Example.com"),
        "alice.smith-example.com"
    );
    assert_eq!(account_name("  Émile Zola "), "mile-zola");
    assert_eq!(account_name("@@@"), "sso-user");
    let long = account_name(&"x".repeat(300));
    assert_eq!(long.len(), 56);
    assert!(crate::names::is_valid_user_name(&format!("{long}-99")));
}

#[test]
fn config_errors_name_the_field() {
    let bad = |change: fn(&mut SsoConfig), field: &str| {
        let mut c = config();
        change(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("sso.{field}")), "{e}");
    };
    bad(|c| c.issuer = "http://id.example.com".into(), "issuer");
    bad(|c| c.issuer = "not a url".into(), "issuer");
    bad(|c| c.client_id = " ".into(), "client_id");
    bad(|c| c.scopes = vec!["email".into()], "scopes");
    bad(
        |c| c.allowed_domains = vec!["a@b".into()],
        "allowed_domains",
    );
    let mut loopback = config();
    loopback.issuer = "http://127.0.0.1:4000".into();
    assert!(loopback.validate().is_ok());
}
