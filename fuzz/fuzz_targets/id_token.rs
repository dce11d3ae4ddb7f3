//! Single sign-on ID tokens as the service checks them (`sso::check`), two ways:
//! - even byte 0: the rest is a JWKS document and a token (split at the first newline), both
//!   hostile: every such token is refused, and the refusal never quotes the token;
//! - odd byte 0: the rest is the token's claims (JSON), signed here with the provider's key, so
//!   that every claim check is reached: an accepted token has every claim the checks demand.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use time::OffsetDateTime;
use valet_service::sso::{LEEWAY, Refusal, SsoConfig, check};

const ISSUER: &str = "https://id.example.com";
const CLIENT: &str = "valet-upload";
const NONCE: &str = "n-0S6_WzA2Mj";
/// A fixed clock, so that a finding replays the same way.
const NOW: i64 = 1_800_000_000;

struct Provider {
    key: EncodingKey,
    keys: JwkSet,
}

fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key reads back");
        let point = pair.public_key().as_ref();
        let keys = serde_json::from_value(json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]}))
        .expect("a JWKS");
        Provider {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            keys,
        }
    })
}

fn config() -> SsoConfig {
    SsoConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        scopes: vec!["openid".into(), "email".into()],
        username_claim: "email".into(),
        allowed_domains: vec!["example.com".into()],
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).expect("a time")
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        hostile(rest);
    } else {
        signed(rest);
    }
});

fn hostile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (jwks, token) = text.split_once('\n').unwrap_or(("", &text));
    let keys: JwkSet = serde_json::from_str(jwks).unwrap_or(JwkSet { keys: vec![] });
    match check(&config(), &keys, token, NONCE, now()) {
        Ok(identity) => panic!("a token no provider signed was accepted: {identity:?}"),
        Err(refusal) => quiet(&refusal, token),
    }
}

/// A refusal says why, without the token's payload or signature (its header's `alg` may show).
fn quiet(refusal: &Refusal, token: &str) {
    let Refusal::Token(why) = refusal else {
        panic!("checking a token is no provider call: {refusal:?}");
    };
    assert!(!why.is_empty());
    let base64url = |p: &&str| {
        p.len() >= 16
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    for piece in token.split('.').skip(1).filter(base64url) {
        assert!(!why.contains(piece), "the refusal quotes the token: {why}");
    }
}

fn signed(data: &[u8]) {
    let Ok(claims) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let provider = provider();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let Ok(token) = jsonwebtoken::encode(&header, &claims, &provider.key) else {
        return;
    };
    let identity = match check(&config(), &provider.keys, &token, NONCE, now()) {
        Ok(identity) => identity,
        Err(refusal) => return quiet(&refusal, &token),
    };
    let leeway = LEEWAY.as_secs() as i64;
    assert_eq!(claims["iss"], ISSUER);
    let audiences: Vec<&Value> = match &claims["aud"] {
        Value::Array(many) => many.iter().collect(),
        one => vec![one],
    };
    assert!(
        audiences.contains(&&json!(CLIENT)),
        "audience {:?}",
        claims["aud"]
    );
    if audiences.len() > 1 {
        assert_eq!(claims["azp"], CLIENT);
    }
    let exp = claims["exp"].as_i64().expect("an expiry");
    assert!(NOW <= exp.saturating_add(leeway), "expired token accepted");
    let iat = claims["iat"].as_i64().expect("an issue time");
    assert!(iat <= NOW + leeway, "token from the future accepted");
    if let Some(nbf) = claims["nbf"].as_i64() {
        assert!(NOW >= nbf - leeway, "token not valid yet accepted");
    }
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(claims["sub"], identity.subject.as_str());
    assert!(!identity.subject.is_empty());
    assert_eq!(claims["email"], identity.name_claim.as_str());
    assert_ne!(claims["email_verified"], Value::Bool(false));
    let domain = identity
        .name_claim
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase());
    assert_eq!(
        domain.as_deref(),
        Some("example.com"),
        "{}",
        identity.name_claim
    );
}
