//! The policy file's fields, as administrators write them. `docs/policy.schema.json` is
//! generated from these types (`UPDATE_POLICY_SCHEMA=1 cargo test -p valet-engine policy`).

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::size::ByteSize;

/// A machine-wide policy. Every field is optional; what it sets beats the user's settings, and
/// the settings named in `locked` cannot be changed by the user at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Valet Upload policy")]
pub struct Policy {
    /// The JSON Schema this file follows (ignored; editors use it to check the file).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The valet service, e.g. `https://valet.example.com`. `http://` only on a loopback host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// How the app signs in.
    #[serde(default)]
    pub sign_in: SignInPolicy,
    /// Folders watched on every machine, each with its own destination and rules. They are
    /// always active; users may add their own unless `watched_folders` is locked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_folders: Vec<PolicyFolder>,
    /// Limits for every upload.
    #[serde(default)]
    pub limits: Limits,
    /// Hosts the app may send file bytes to, e.g. `*.blob.core.windows.net` or
    /// `storage.example.com:9000`. Empty: any host the service names. A key for any other host
    /// is refused before a byte is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_storage_hosts: Vec<String>,
    /// Proxy for every connection, e.g. `http://proxy.example.com:3128` (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Start the app when the user signs in to the computer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    /// Show a notification when a batch is verified or something failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<bool>,
    /// Settings the user cannot change: the app shows them locked and the CLI refuses them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub locked: BTreeSet<Setting>,
}

/// How the app signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInPolicy {
    /// `password` (a person signs in), `enrollment` (the device enrolls itself with
    /// `enrollment_secret` at first start), or `sso` (the system browser, through the
    /// organisation's OpenID Connect provider).
    #[serde(default)]
    pub mode: SignInMode,
    /// The organisation's enrollment secret (mode `enrollment`). Readable only by
    /// administrators: protect the policy file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_secret: Option<String>,
    /// The OpenID Connect provider (mode `sso`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoPolicy>,
    /// Whether the sign-in screen may appear. `false` with `enrollment`: users never see it;
    /// with `sso`, the browser opens by itself.
    #[serde(default = "yes")]
    pub allow_sign_in_screen: bool,
}

fn yes() -> bool {
    true
}

impl Default for SignInPolicy {
    fn default() -> Self {
        Self {
            mode: SignInMode::default(),
            enrollment_secret: None,
            sso: None,
            allow_sign_in_screen: true,
        }
    }
}

/// How the app signs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignInMode {
    /// A person signs in with an account name and password.
    #[default]
    Password,
    /// The device enrolls itself with the organisation's secret.
    Enrollment,
    /// Single sign-on through the system browser.
    Sso,
}

/// The organisation's OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoPolicy {
    /// The provider's issuer URL (its discovery document is at
    /// `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    /// The app's client id at the provider (a public client: no secret).
    pub client_id: String,
    /// Scopes asked for besides `openid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// One folder watched on every machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFolder {
    /// The folder, an absolute path. `~/` stands for the user's home folder.
    pub path: String,
    /// Folder in the store under the account's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Seconds a file must stay unchanged before it is uploaded (1 to 3600; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_seconds: Option<u32>,
    /// After a verified upload: `leave` (default), `delete`, or `move:SUBDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_upload: Option<String>,
    /// Only files matching one of these globs (e.g. `*.pdf`, `**/scans/*.tif`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Never files matching one of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Also upload dotfiles and files in dot-folders.
    #[serde(default)]
    pub hidden: bool,
}

/// Limits for every upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bandwidth for all uploads together, per second: bytes, or a size like `20 MiB`.
    /// Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<ByteSize>,
    /// Parts sent at once per file (1 to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_parts: Option<u32>,
    /// Largest file uploaded: bytes, or a size like `50 GiB`. Larger files are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<ByteSize>,
}

/// A setting that a policy can lock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// The service URL: sign-in goes to the policy's `server` only.
    Server,
    /// Parts sent at once.
    ParallelParts,
    /// The bandwidth limit.
    Bandwidth,
    /// Notifications on or off.
    Notifications,
    /// Start at login on or off.
    Autostart,
    /// The user's own watched folders (the policy's are always on).
    WatchedFolders,
    /// Signing out (a managed device stays signed in).
    SignOut,
}

impl Setting {
    /// The name in the policy file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::ParallelParts => "parallel_parts",
            Self::Bandwidth => "bandwidth",
            Self::Notifications => "notifications",
            Self::Autostart => "autostart",
            Self::WatchedFolders => "watched_folders",
            Self::SignOut => "sign_out",
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
