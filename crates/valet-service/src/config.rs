//! The service's configuration: `valet.toml` (see docs/CONTRACTS.md) overlaid with
//! `VALET_SERVICE_*` environment variables (`VALET_SERVICE_KEYS__TTL=2s` sets `keys.ttl`).
//!
//! Parsing is two steps, as with any input a person writes: figment turns the file into typed
//! values (its errors name the key), then [`Config::validate`] checks the rules types cannot
//! express and names the field it refuses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use url::Url;
use valet_protocol::StoreLimits;

use crate::Error;

/// Environment prefix of configuration overrides. Not `VALET_`: the `valet` client reads
/// `VALET_DATA_DIR` and `VALET_LOG`, and a service started beside it must not pick them up.
pub const ENV_PREFIX: &str = "VALET_SERVICE_";

/// Everything `valet-service serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; plain HTTP only on loopback.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where `valet.db` lives.
    pub data_dir: PathBuf,
    /// TLS certificate and key; required unless `listen` is loopback.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokenConfig,
    /// Key lifetimes.
    #[serde(default)]
    pub keys: KeyConfig,
    /// Cleanup of abandoned uploads.
    #[serde(default)]
    pub uploads: UploadConfig,
    /// What users may upload.
    #[serde(default)]
    pub limits: Limits,
    /// Waits after failed sign-ins (see [`crate::throttle`]).
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// The object store.
    pub store: StoreConfig,
    /// Further stores by name (`[stores.NAME]`, the same fields as `[store]`), for the users
    /// `[routing]` sends there.
    #[serde(default)]
    pub stores: std::collections::BTreeMap<String, StoreConfig>,
    /// Which users' uploads go to which named store; everyone else's go to `[store]`.
    #[serde(default)]
    pub routing: Routing,
    /// Enrollment secrets for managed devices (`[[enrollment]]`): a device presenting one gets
    /// its own account, `NAME-HOSTNAME`, and a sign-in `valet-service device revoke` ends.
    #[serde(default)]
    pub enrollment: Vec<Enrollment>,
    /// Single sign-on through an OpenID Connect provider (`[sso]`, see [`crate::sso`]).
    #[serde(default)]
    pub sso: Option<crate::sso::SsoConfig>,
}

/// `[[enrollment]]`: one organisation's (or group's) enrollment secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Names the group; device accounts are `NAME-HOSTNAME`.
    pub name: String,
    /// Hex SHA-256 of the secret (`valet-service enrollment new-secret` makes both); the
    /// secret itself never sits in the config.
    pub secret_sha256: String,
}

/// `[routing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Account name to store name (`[routing.users] alice = "eu"`).
    pub users: std::collections::BTreeMap<String, String>,
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Life of an access token: short, since a leaked one works until it expires.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Life of a refresh token (each is single-use; rotation keeps a sign-in alive).
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// Life of each part key (pre-signed URL).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// `[uploads]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Open uploads idle this long are aborted on the store.
    #[serde(with = "humantime_serde")]
    pub abandon_after: Duration,
    /// How often the sweeper looks for them.
    #[serde(with = "humantime_serde")]
    pub sweep_every: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            abandon_after: Duration::from_secs(24 * 3600),
            sweep_every: Duration::from_secs(10 * 60),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest file a user may upload.
    pub max_file_size: ByteSize,
    /// Content-type globs (`*/*`, `image/*`, `application/pdf`).
    pub allowed_content_types: Vec<String>,
    /// Bytes of verified plus open uploads per account, when set.
    pub user_quota: Option<ByteSize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize::b(valet_protocol::MAX_OBJECT_SIZE),
            allowed_content_types: vec!["*/*".to_owned()],
            user_quota: None,
        }
    }
}

/// `[throttle]`: failed sign-ins at the token endpoint (see [`crate::throttle`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Off only for a deployment that throttles in front of the service.
    pub enabled: bool,
    /// Failures in a row for one account from one address before waits begin.
    pub free_failures: u32,
    /// Failures in a row from one address, whatever the account, before waits begin.
    pub address_free_failures: u32,
    /// The first wait; each further failure doubles it.
    #[serde(with = "humantime_serde")]
    pub first_delay: Duration,
    /// The longest wait: someone guessing from the person's own address delays them at most
    /// this long.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Failures are forgotten after this long without any.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            free_failures: 5,
            address_free_failures: 50,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// How the service checks a completed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Compare the store's composite SHA-256 with the one computed from the part digests the
    /// service signed into the keys. For stores that check `x-amz-checksum-sha256` per part.
    Checksum,
    /// Read the object back and hash it. For stores that do not check part checksums.
    ReadBack,
}

/// The store's protocol (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKindConfig {
    /// Amazon S3 or an S3-compatible store.
    S3,
    /// Azure Blob Storage (or Azurite): `endpoint` is the account's blob endpoint, `bucket`
    /// the container.
    Azure,
    /// Google Cloud Storage (or an emulator): `endpoint` is `https://storage.googleapis.com`.
    Gcs,
}

/// How the service signs Azure keys and authenticates its own Azure calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AzureAuth {
    /// Service SAS signed with the account key (`account_key` in `credentials_file`, or
    /// `AZURE_STORAGE_KEY`).
    #[default]
    SharedKey,
    /// User-delegation SAS: the service signs in to Entra ID as an application (`tenant_id`,
    /// `client_id`, and `client_secret` in `credentials_file` or `AZURE_CLIENT_SECRET`) and
    /// asks Azure for a delegation key; the account key is never needed.
    Entra,
}

/// `[store.azure]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Storage account; by default the first label of the endpoint's host, or on loopback
    /// (Azurite) the endpoint's first path segment.
    pub account: Option<String>,
    /// Shared key or Entra ID.
    pub auth: AzureAuth,
    /// Entra ID tenant (auth = "entra").
    pub tenant_id: Option<String>,
    /// Entra ID application (client) id (auth = "entra").
    pub client_id: Option<String>,
    /// Entra ID sign-in authority.
    pub authority: Url,
    /// Also have the store check each block's `x-ms-content-crc64`. The real service does;
    /// Azurite does not support it (strict mode refuses the header), so it is off by default.
    pub crc64: bool,
    /// How long before issuance a SAS starts, for clocks that run behind.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
}

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            account: None,
            auth: AzureAuth::SharedKey,
            tenant_id: None,
            client_id: None,
            authority: Url::parse("https://login.microsoftonline.com/").expect("a valid URL"),
            crc64: false,
            clock_skew: Duration::from_secs(5 * 60),
        }
    }
}

/// How the service authenticates its own calls to the GCS JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GcsApiAuth {
    /// OAuth access tokens for the service account (JWT bearer grant).
    #[default]
    Oauth,
    /// None: only for an emulator on loopback, whose API takes no credentials. Keys are
    /// still V4-signed with the service account.
    None,
}

/// `[store.gcs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    /// Authentication of the service's own calls.
    pub api_auth: GcsApiAuth,
    /// Where part objects wait until the service composes them (outside every user prefix).
    pub parts_prefix: String,
}

impl Default for GcsConfig {
    fn default() -> Self {
        Self {
            api_auth: GcsApiAuth::Oauth,
            parts_prefix: ".valet-parts".to_owned(),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's protocol.
    #[serde(default = "default_kind")]
    pub kind: StoreKindConfig,
    /// `scheme://host[:port]` of the S3 API.
    pub endpoint: Url,
    /// SigV4 region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket of all uploads.
    pub bucket: String,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host addressing.
    #[serde(default)]
    pub path_style: bool,
    /// First segment of every object key.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Create the bucket at start when missing.
    #[serde(default)]
    pub create_bucket: bool,
    /// How completed objects are checked.
    #[serde(default = "default_verify")]
    pub verify: VerifyMode,
    /// Also record the sha256 as an object tag.
    #[serde(default = "default_true")]
    pub tag_objects: bool,
    /// S3: TOML file with `access_key_id`, `secret_access_key`, optional `session_token`.
    /// Azure: TOML with `account_key` (shared key) or `client_secret` (Entra ID).
    /// GCS: the service account's JSON key file.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Azure settings (kind = "azure").
    #[serde(default)]
    pub azure: AzureConfig,
    /// GCS settings (kind = "gcs").
    #[serde(default)]
    pub gcs: GcsConfig,
    /// Fewer parts per upload than the store allows (S3 10,000, Azure 50,000, GCS 1024), for
    /// an S3-compatible store with a lower limit, or a test: the service then chooses larger
    /// parts. Unset: the store's own limit.
    #[serde(default)]
    pub max_parts: Option<u32>,
}

impl StoreConfig {
    /// Checks what the types cannot; errors name the field under `at` (`store`, `stores.eu`).
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        let field = |name: &str, why: &str| Err(Error::Config(format!("{at}.{name}: {why}")));
        if !matches!(self.endpoint.scheme(), "http" | "https") || self.endpoint.host_str().is_none()
        {
            return field("endpoint", "must be an http:// or https:// URL");
        }
        if self.kind == StoreKindConfig::Gcs
            && self.gcs.api_auth == GcsApiAuth::None
            && !crate::store::is_loopback(&self.endpoint)
        {
            return field(
                "gcs.api_auth",
                "\"none\" is only for an emulator on a loopback endpoint",
            );
        }
        if self.kind == StoreKindConfig::Azure
            && self.azure.auth == AzureAuth::Entra
            && (self.azure.tenant_id.is_none() || self.azure.client_id.is_none())
        {
            return field("azure", "auth = \"entra\" needs tenant_id and client_id");
        }
        let most = self.kind_limits().max_parts;
        if self.max_parts.is_some_and(|n| !(1..=most).contains(&n)) {
            return field(
                "max_parts",
                &format!("must be 1 to {most}, the store's own limit"),
            );
        }
        if self.bucket.len() < 3 || self.bucket.len() > 63 {
            return field("bucket", "must be 3 to 63 characters (S3 bucket rules)");
        }
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() || crate::names::sanitize_prefix(prefix).as_deref() != Some(prefix) {
            return field(
                "prefix",
                "must be a non-empty path of plain segments (letters, digits, - _ .)",
            );
        }
        Ok(())
    }

    /// The limits of the store's kind ([`StoreLimits::of`]), before `max_parts`.
    fn kind_limits(&self) -> StoreLimits {
        match self.kind {
            StoreKindConfig::S3 => StoreLimits::S3,
            StoreKindConfig::Azure => StoreLimits::AZURE,
            StoreKindConfig::Gcs => StoreLimits::GCS,
        }
    }

    /// What the store takes in one upload: its kind's limits, with fewer parts when
    /// `max_parts` says so. The service chooses every upload's part size within them.
    pub fn limits(&self) -> StoreLimits {
        let kind = self.kind_limits();
        StoreLimits {
            max_parts: self.max_parts.unwrap_or(kind.max_parts),
            ..kind
        }
    }

    /// The text of `store.credentials_file`, else of the file `env` names, else `None`.
    pub fn credentials_text(&self, env: &str) -> Result<Option<String>, Error> {
        let path = match &self.credentials_file {
            Some(path) => path.clone(),
            None => match std::env::var_os(env) {
                Some(path) => PathBuf::from(path),
                None => return Ok(None),
            },
        };
        read_credentials(&path).map(Some)
    }

    /// One secret of a TOML `credentials_file` (`account_key`, `client_secret`), else the
    /// environment variable `env`.
    pub fn credential_field(&self, name: &str, env: &str) -> Result<String, Error> {
        if let Some(path) = &self.credentials_file {
            let text = read_credentials(path)?;
            let table: std::collections::BTreeMap<String, String> = Figment::new()
                .merge(Toml::string(&text))
                .extract()
                .map_err(|e| Error::Config(format!("store.credentials_file: {e}")))?;
            return table.get(name).cloned().ok_or_else(|| {
                Error::Config(format!(
                    "store.credentials_file: {} has no {name}",
                    path.display()
                ))
            });
        }
        std::env::var(env).map_err(|_| {
            Error::Config(format!(
                "store.credentials_file: not set, and {env} is not in the environment"
            ))
        })
    }
}

/// The text of a credentials file; an error names `store.credentials_file` and the path.
fn read_credentials(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "store.credentials_file: cannot read {}: {e}",
            path.display()
        ))
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_kind() -> StoreKindConfig {
    StoreKindConfig::S3
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_prefix() -> String {
    "users".to_owned()
}
fn default_verify() -> VerifyMode {
    VerifyMode::Checksum
}
fn default_true() -> bool {
    true
}

/// S3 credentials as written in `credentials_file`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads `path`, overlays `VALET_SERVICE_*` variables, and validates the result.
    pub fn load(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            return Err(Error::Config(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        Self::from_figment(
            Figment::new()
                .merge(Toml::file_exact(path))
                .merge(Env::prefixed(ENV_PREFIX).split("__")),
        )
    }

    /// Parses TOML text (no environment): for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, Error> {
        let config: Self = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot; every error names its field.
    pub fn validate(&self) -> Result<(), Error> {
        let field = |name: &str, why: &str| Err(Error::Config(format!("{name}: {why}")));
        if self.tokens.access_ttl < Duration::from_secs(1) {
            return field("tokens.access_ttl", "must be at least 1s");
        }
        if self.tokens.refresh_ttl < self.tokens.access_ttl {
            return field("tokens.refresh_ttl", "must not be shorter than access_ttl");
        }
        // S3 accepts pre-signed URLs living 1 second to 7 days.
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&self.keys.ttl) {
            return field("keys.ttl", "must be between 1s and 7 days (S3's limits)");
        }
        if self.uploads.sweep_every < Duration::from_secs(1) {
            return field("uploads.sweep_every", "must be at least 1s");
        }
        if self.limits.max_file_size.as_u64() > valet_protocol::MAX_OBJECT_SIZE {
            return field("limits.max_file_size", "must not exceed 5 TiB (S3's limit)");
        }
        if self.limits.allowed_content_types.is_empty() {
            return field(
                "limits.allowed_content_types",
                "must list at least one glob (\"*/*\" allows all)",
            );
        }
        let throttle = &self.throttle;
        if throttle.free_failures == 0 || throttle.address_free_failures == 0 {
            return field(
                "throttle.free_failures",
                "must be at least 1 (and address_free_failures too)",
            );
        }
        if throttle.first_delay.is_zero() || throttle.max_delay < throttle.first_delay {
            return field(
                "throttle.max_delay",
                "must be at least first_delay, which must be more than 0",
            );
        }
        if throttle.max_delay > Duration::from_secs(24 * 3600) {
            return field(
                "throttle.max_delay",
                "must be at most 24h: a longer wait lets a guesser lock the person out",
            );
        }
        for (i, entry) in self.enrollment.iter().enumerate() {
            if !crate::names::is_valid_user_name(&entry.name) || entry.name.len() > 32 {
                return field(
                    &format!("enrollment[{i}].name"),
                    "use 1-32 of a-z 0-9 - _ . (it starts device account names)",
                );
            }
            let hex = &entry.secret_sha256;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return field(
                    &format!("enrollment[{i}].secret_sha256"),
                    "must be 64 hex digits (valet-service enrollment new-secret prints it)",
                );
            }
            if self.enrollment[..i].iter().any(|e| e.name == entry.name) {
                return field(&format!("enrollment[{i}].name"), "used twice");
            }
        }
        if let Some(sso) = &self.sso {
            sso.validate()?;
        }
        self.store.validate("store")?;
        for (name, store) in &self.stores {
            if crate::names::sanitize_prefix(name).as_deref() != Some(name.as_str())
                || name.contains('/')
            {
                return field(
                    &format!("stores.{name}"),
                    "names are letters, digits, - _ .",
                );
            }
            store.validate(&format!("stores.{name}"))?;
        }
        for (user, name) in &self.routing.users {
            if !self.stores.contains_key(name) {
                return field(
                    &format!("routing.users.{user}"),
                    &format!("names store {name:?}, which no [stores.{name}] table defines"),
                );
            }
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("valet.db")
    }

    /// Credentials for the `[store]`: `credentials_file` when set, else the AWS_* variables.
    pub fn store_credentials(&self) -> Result<StoreCredentials, Error> {
        self.store.s3_credentials()
    }
}

impl StoreConfig {
    /// S3 credentials: `credentials_file` when set, else the AWS_* variables.
    pub fn s3_credentials(&self) -> Result<StoreCredentials, Error> {
        if let Some(path) = &self.credentials_file {
            let text = read_credentials(path)?;
            return toml_credentials(&text).map_err(|e| {
                Error::Config(format!(
                    "store.credentials_file: {} is not valid: {e}",
                    path.display()
                ))
            });
        }
        match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(access_key_id), Ok(secret_access_key)) => Ok(StoreCredentials {
                access_key_id,
                secret_access_key,
                session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
            }),
            _ => Err(Error::Config(
                "store.credentials_file: not set, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY \
                 are not in the environment"
                    .to_owned(),
            )),
        }
    }
}

fn toml_credentials(text: &str) -> Result<StoreCredentials, String> {
    Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        data_dir = "/tmp/v"
        [store]
        endpoint = "http://127.0.0.1:8333"
        bucket = "valet-test"
    "#;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.keys.ttl, Duration::from_secs(600));
        assert_eq!(config.tokens.access_ttl, Duration::from_secs(900));
        assert_eq!(config.store.verify, VerifyMode::Checksum);
        assert_eq!(config.store.prefix, "users");
        assert!(config.store.tag_objects);
    }

    #[test]
    fn the_full_example_of_the_contract_parses() {
        let text = r#"
            listen = "127.0.0.1:8080"
            data_dir = "/var/lib/valet"
            [tokens]
            access_ttl  = "15m"
            refresh_ttl = "30d"
            [keys]
            ttl = "2s"
            [uploads]
            abandon_after = "24h"
            sweep_every   = "10m"
            [limits]
            max_file_size = "5 TiB"
            allowed_content_types = ["*/*"]
            user_quota = "1 TiB"
            [store]
            kind = "s3"
            endpoint = "https://s3.eu-west-1.amazonaws.com"
            region = "eu-west-1"
            bucket = "my-uploads"
            path_style = false
            prefix = "users"
            create_bucket = false
            verify = "read-back"
            tag_objects = true
            credentials_file = "/etc/valet/s3.toml"
        "#;
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.keys.ttl, Duration::from_secs(2));
        assert_eq!(config.limits.user_quota, Some(ByteSize::tib(1)));
        assert_eq!(config.store.verify, VerifyMode::ReadBack);
    }

    fn error_of(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    /// `text` is refused with an error that names `field`.
    fn assert_names(text: &str, field: &str) {
        let error = error_of(text);
        assert!(error.contains(field), "{field}: {error}");
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert_names(
            &format!("{MINIMAL}\n[keys]\nttl = \"ten minutes\""),
            "keys.ttl",
        );
        assert_names(
            &MINIMAL.replace("[store]", "[limits]\nmax_file_size = \"lots\"\n[store]"),
            "limits.max_file_size",
        );
        assert_names(&format!("{MINIMAL}\nverify = \"trust-me\""), "store.verify");
        assert_names(&format!("{MINIMAL}\nbuckett = \"x\""), "buckett");
        assert_names("data_dir = \"/tmp\"", "store");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let long_key = format!("{MINIMAL}\n[keys]\nttl = \"8d\"");
        assert!(
            error_of(&long_key).starts_with("config: keys.ttl:"),
            "{}",
            error_of(&long_key)
        );
        assert_names(&MINIMAL.replace("valet-test", "v"), "store.bucket");
        assert_names(&format!("{MINIMAL}\nprefix = \"../up\""), "store.prefix");
        assert_names(&format!("{MINIMAL}\nmax_parts = 0"), "store.max_parts");
        let throttle =
            |body: &str| MINIMAL.replace("[store]", &format!("[throttle]\n{body}\n[store]"));
        assert_names(&throttle("free_failures = 0"), "throttle.free_failures");
        assert_names(&throttle("max_delay = \"2d\""), "throttle.max_delay");
        assert_names(
            &throttle("first_delay = \"1m\"\nmax_delay = \"1s\""),
            "throttle.max_delay",
        );
        assert_names(&throttle("first_delay = \"soon\""), "throttle.first_delay");
        assert_names(
            &format!("{MINIMAL}\nkind = \"gcs\"\nmax_parts = 1025"),
            "store.max_parts",
        );
        let sha = "ab".repeat(32);
        let enrollment = |name: &str, sha: &str| {
            format!("{MINIMAL}\n[[enrollment]]\nname = \"{name}\"\nsecret_sha256 = \"{sha}\"")
        };
        assert!(Config::from_toml(&enrollment("laptops", &sha)).is_ok());
        assert_names(&enrollment("Lap Tops", &sha), "enrollment[0].name");
        assert_names(&enrollment("laptops", "abc"), "enrollment[0].secret_sha256");
        let twice = format!(
            "{}\n[[enrollment]]\nname = \"laptops\"\nsecret_sha256 = \"{sha}\"",
            enrollment("laptops", &sha)
        );
        assert_names(&twice, "enrollment[1].name");
    }

    #[test]
    fn max_parts_lowers_the_stores_part_count_only() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.store.limits(), StoreLimits::S3);
        let config =
            Config::from_toml(&format!("{MINIMAL}\nkind = \"gcs\"\nmax_parts = 16")).unwrap();
        assert_eq!(
            config.store.limits(),
            StoreLimits {
                max_parts: 16,
                ..StoreLimits::GCS
            }
        );
    }

    #[test]
    fn credentials_file_is_toml_and_never_debug_printed() {
        let creds =
            toml_credentials("access_key_id = \"AKIA\"\nsecret_access_key = \"very-secret\"\n")
                .unwrap();
        assert_eq!(creds.access_key_id, "AKIA");
        assert!(!format!("{creds:?}").contains("very-secret"));
    }
}
