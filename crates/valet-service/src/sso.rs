//! Single sign-on: the `[sso]` config and the checks of an OpenID Connect ID token.
//!
//! The client is the OAuth public client (RFC 8252): it runs the authorization code flow with
//! PKCE in the system browser and sends the service only the ID token and the nonce it put in
//! its request. The service trusts the token only after every check of OpenID Connect Core
//! §3.1.3.7 that applies to it:
//! - signed by a key of the provider's JWKS, with an asymmetric algorithm (never `none` or an
//!   HMAC one, whose "key" would be the public client id);
//! - `iss` is the configured issuer (and the discovery document says the same);
//! - `aud` holds our client id, and `azp` is it when there are several audiences;
//! - `exp`, `nbf` and `iat` with a small leeway for clock skew;
//! - `nonce` is the one the client presented (a token replayed from another sign-in fails);
//! - it was not traded before: each ID token starts one sign-in (`db::identities`);
//! - with `username_claim = "email"`, `email_verified: false` is refused, and the domain must
//!   be in `allowed_domains` when that is set.
//!
//! Accounts are bound to `(iss, sub)`, the identity the provider promises never to reuse; the
//! email only names the account on its first sign-in.

use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use url::Url;

use crate::Error;

/// `[sso]`: the OpenID Connect provider people sign in with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// The provider's issuer, exactly as its ID tokens' `iss` writes it.
    pub issuer: String,
    /// Valet Upload's client id at the provider (a native, public client).
    pub client_id: String,
    /// Scopes clients ask for.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names a new account (`email`, `preferred_username`, …).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// When not empty, only people whose claim ends in `@` one of these domains may sign in.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_username_claim() -> String {
    "email".into()
}

impl SsoConfig {
    /// Checks what the types cannot; every error names its field.
    pub fn validate(&self) -> Result<(), Error> {
        let field = |name: &str, why: &str| Err(Error::Config(format!("sso.{name}: {why}")));
        match Url::parse(&self.issuer) {
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" && crate::store::is_loopback(&url) => {}
            Ok(_) => {
                return field(
                    "issuer",
                    "must be an https:// URL (http:// only on loopback)",
                );
            }
            Err(e) => return field("issuer", &format!("not a URL: {e}")),
        }
        if self.client_id.trim().is_empty() {
            return field("client_id", "must not be empty");
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return field("scopes", "must include \"openid\"");
        }
        if self.username_claim.trim().is_empty() {
            return field("username_claim", "must name a claim, e.g. \"email\"");
        }
        if let Some(bad) = self
            .allowed_domains
            .iter()
            .find(|d| d.is_empty() || d.contains(['@', '/', ' ']))
        {
            return field("allowed_domains", &format!("{bad:?} is not a domain name"));
        }
        Ok(())
    }
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token failed a check; the message says which (it never holds the token).
    Token(String),
    /// The provider's discovery document or keys could not be fetched or read.
    Provider(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(why) | Self::Provider(why) => f.write_str(why),
        }
    }
}

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Token(why.into()))
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `iss`.
    pub issuer: String,
    /// `sub`: stable for this person at this issuer.
    pub subject: String,
    /// The `username_claim`'s value, which names the account on its first sign-in.
    pub name_claim: String,
    /// When the token expires (`exp`): until then, it is remembered as spent.
    pub expires_at: OffsetDateTime,
}

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Keys are fetched again for an unknown `kid` at most this often (a token with a made-up
/// `kid` must not make us hammer the provider).
const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(60);

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The algorithms accepted: asymmetric only.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks ID tokens against the configured provider; its keys are fetched on first use and
/// kept.
#[derive(Debug)]
pub struct Verifier {
    config: SsoConfig,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<KeyCache>,
}

#[derive(Debug, Default)]
struct KeyCache {
    jwks_uri: Option<Url>,
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: Url,
}

impl Verifier {
    /// A verifier for `config`; nothing is fetched yet.
    pub fn new(config: SsoConfig) -> Self {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            keys: tokio::sync::Mutex::new(KeyCache::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    /// Checks `id_token` (see the module's list) and answers who signed in.
    pub async fn verify(
        &self,
        id_token: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, Refusal> {
        let header = header_of(id_token)?;
        let keys = self.keys_with(header.kid.as_deref()).await?;
        check(&self.config, &keys, id_token, nonce, now)
    }

    /// The provider's keys, fetched when none are kept yet or when `kid` is not among them
    /// (the provider rotated its keys) and the last fetch is a minute old.
    async fn keys_with(&self, kid: Option<&str>) -> Result<JwkSet, Refusal> {
        let mut cache = self.keys.lock().await;
        let known = |set: &JwkSet| kid.is_none_or(|kid| set.find(kid).is_some());
        let stale = cache
            .fetched
            .is_none_or(|at| at.elapsed() >= JWKS_REFETCH_EVERY);
        if let Some(set) = &cache.set
            && (known(set) || !stale)
        {
            return Ok(set.clone());
        }
        let jwks_uri = match &cache.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                cache.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set: JwkSet = self.fetch_json(&jwks_uri, "its keys (JWKS)").await?;
        cache.fetched = Some(Instant::now());
        cache.set = Some(set.clone());
        Ok(set)
    }

    async fn discover(&self) -> Result<Url, Refusal> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let url = Url::parse(&url).map_err(|e| Refusal::Provider(e.to_string()))?;
        let discovery: Discovery = self.fetch_json(&url, "its discovery document").await?;
        if discovery.issuer != self.config.issuer {
            return Err(Refusal::Provider(format!(
                "the provider's discovery document names issuer {:?}, not the configured {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        if discovery.jwks_uri.scheme() != "https" && !crate::store::is_loopback(&discovery.jwks_uri)
        {
            return Err(Refusal::Provider(
                "the provider's jwks_uri is not https://".into(),
            ));
        }
        Ok(discovery.jwks_uri)
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        what: &str,
    ) -> Result<T, Refusal> {
        let unreachable = |why: String| {
            Refusal::Provider(format!(
                "the sign-in provider {} did not give {what}: {why}",
                self.config.issuer
            ))
        };
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(unreachable("the answer is too large".into()));
            }
        }
        serde_json::from_slice(&body).map_err(|e| unreachable(format!("unreadable JSON: {e}")))
    }
}

/// The JOSE header, read before its signature is checked only to pick the key and refuse
/// unsigned or symmetric tokens with a clear reason.
fn header_of(id_token: &str) -> Result<jsonwebtoken::Header, Refusal> {
    let Some(encoded) = id_token.split('.').next().filter(|h| !h.is_empty()) else {
        return refuse("the ID token is not a JWT");
    };
    let raw: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Refusal::Token("the ID token's header is not readable".into()))?;
    let alg = raw.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") {
        return refuse(format!(
            "the ID token is signed with {alg:?}; only asymmetric algorithms (RS256, ES256, …) \
             are accepted"
        ));
    }
    let header = jsonwebtoken::decode_header(id_token)
        .map_err(|e| Refusal::Token(format!("the ID token's header is not readable: {e}")))?;
    if !ASYMMETRIC.contains(&header.alg) {
        return refuse(format!(
            "the ID token is signed with {:?}; only asymmetric algorithms are accepted",
            header.alg
        ));
    }
    Ok(header)
}

/// The claims we read; the rest are ignored.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Audience,
    azp: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    nonce: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    fn all(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
            Self::None => &[],
        }
    }
}

/// Every check of the module's list against `keys`, at time `now`.
pub fn check(
    config: &SsoConfig,
    keys: &JwkSet,
    id_token: &str,
    nonce: &str,
    now: OffsetDateTime,
) -> Result<Identity, Refusal> {
    let header = header_of(id_token)?;
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    };
    let Some(jwk) = jwk else {
        return refuse("the ID token is signed with a key the provider does not publish");
    };
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| Refusal::Token(format!("the provider's key is not usable: {e}")))?;
    // The signature only: every claim is checked below, against `now`, with our own messages.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                Refusal::Token("the ID token's signature does not verify".into())
            }
            _ => Refusal::Token(format!("the ID token is not valid: {e}")),
        })?
        .claims;

    if claims.iss.as_deref() != Some(config.issuer.as_str()) {
        return refuse("the ID token's issuer is not this service's sign-in provider");
    }
    let audiences = claims.aud.all();
    if !audiences.contains(&config.client_id) {
        return refuse("the ID token's audience is not this service's client id");
    }
    if audiences.len() > 1 && claims.azp.as_deref() != Some(config.client_id.as_str()) {
        return refuse("the ID token has several audiences and its azp is not this client id");
    }
    let now = now.unix_timestamp();
    let leeway = LEEWAY.as_secs() as i64;
    let Some(exp) = claims.exp else {
        return refuse("the ID token has no expiry (exp)");
    };
    if now > exp.saturating_add(leeway) {
        return refuse("the ID token has expired");
    }
    if claims
        .nbf
        .is_some_and(|nbf| now < nbf.saturating_sub(leeway))
    {
        return refuse("the ID token is not valid yet (nbf)");
    }
    match claims.iat {
        None => return refuse("the ID token has no issue time (iat)"),
        Some(iat) if iat > now.saturating_add(leeway) => {
            return refuse("the ID token was issued in the future (iat)");
        }
        Some(_) => {}
    }
    if claims.nonce.as_deref() != Some(nonce) || nonce.is_empty() {
        return refuse("the ID token's nonce is not the one of this sign-in");
    }
    let Some(subject) = claims.sub.filter(|s| !s.is_empty()) else {
        return refuse("the ID token names no subject (sub)");
    };
    let claim = &config.username_claim;
    let Some(name_claim) = claims
        .other
        .get(claim)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
    else {
        return refuse(format!(
            "the ID token has no {claim:?} claim (ask for the scope that carries it)"
        ));
    };
    if claim == "email" && claims.other.get("email_verified") == Some(&Value::Bool(false)) {
        return refuse("the email address in the ID token is not verified by the provider");
    }
    if !config.allowed_domains.is_empty() {
        let domain = name_claim
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| {
            config
                .allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d))
        }) {
            return refuse(format!(
                "{name_claim:?} is not in a domain this service allows"
            ));
        }
    }
    Ok(Identity {
        issuer: config.issuer.clone(),
        subject,
        name_claim: name_claim.to_owned(),
        expires_at: OffsetDateTime::from_unix_timestamp(exp.saturating_add(leeway))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

/// An account name made from a claim: lower case, anything but a-z 0-9 - _ . made `-`
/// (`Alice.Smith@Example.com` → `alice.smith-example.com`), at most 56 characters so that a
/// `-N` suffix still fits. `sso-user` when nothing is left.
pub fn account_name(claim: &str) -> String {
    let name = crate::names::user_name_part(claim, 56);
    if crate::names::is_valid_user_name(&name) {
        name
    } else {
        "sso-user".into()
    }
}

#[cfg(test)]
#[path = "sso_tests.rs"]
mod tests;
