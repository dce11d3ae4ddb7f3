//! Where a policy comes from on each OS, and reading it.

use std::path::{Path, PathBuf};

use super::{Format, Policy, PolicyError};

/// Names a policy file to use instead of the system's places (trials, tests).
pub const POLICY_ENV: &str = "VALET_POLICY";

/// One place a policy may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A JSON or TOML file (by extension; anything but `.toml` is JSON).
    File(PathBuf),
    /// Windows: the values under `HKLM\SOFTWARE\Policies\ValetUpload`, as Group Policy (the
    /// ADMX template in `packaging/windows`) writes them.
    Registry,
    /// macOS: a managed preferences property list (configuration profiles write it).
    ManagedPreferences(PathBuf),
}

/// The registry key read on Windows.
pub(crate) const REGISTRY_KEY: &str = r"SOFTWARE\Policies\ValetUpload";

/// The places looked at, first found wins: `VALET_POLICY` alone when set; else on Linux
/// `/etc/valet-upload/policy.json` then `policy.toml`; on Windows the registry key then
/// `%ProgramData%\ValetUpload\policy.json` and `.toml`; on macOS the managed preferences
/// then `/Library/Application Support/ValetUpload/policy.json` and `.toml`.
pub fn system_sources() -> Vec<PolicySource> {
    if let Some(file) = std::env::var_os(POLICY_ENV).filter(|v| !v.is_empty()) {
        return vec![PolicySource::File(PathBuf::from(file))];
    }
    let mut sources = Vec::new();
    let dir: PathBuf = if cfg!(windows) {
        sources.push(PolicySource::Registry);
        std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
            .join("ValetUpload")
    } else if cfg!(target_os = "macos") {
        sources.push(PolicySource::ManagedPreferences(PathBuf::from(
            "/Library/Managed Preferences/io.valetupload.desktop.plist",
        )));
        PathBuf::from("/Library/Application Support/ValetUpload")
    } else {
        PathBuf::from("/etc/valet-upload")
    };
    sources.push(PolicySource::File(dir.join("policy.json")));
    sources.push(PolicySource::File(dir.join("policy.toml")));
    sources
}

impl PolicySource {
    /// How this place is named in messages.
    pub fn origin(&self) -> String {
        match self {
            Self::File(path) | Self::ManagedPreferences(path) => path.display().to_string(),
            Self::Registry => format!(r"HKLM\{REGISTRY_KEY}"),
        }
    }

    /// The folder whose changes may change this source (watched for changes).
    pub(crate) fn folder(&self) -> Option<&Path> {
        match self {
            Self::File(path) | Self::ManagedPreferences(path) => path.parent(),
            Self::Registry => None,
        }
    }

    /// The raw policy here, `None` when there is none. The raw text is compared between reads
    /// so that an unchanged policy is not parsed and announced again.
    pub(crate) fn read_raw(&self) -> Result<Option<Raw>, PolicyError> {
        let unreadable = |e: String| PolicyError {
            origin: self.origin(),
            field: String::new(),
            message: e,
        };
        match self {
            Self::File(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes)
                        .map_err(|_| unreadable("not UTF-8 text".into()))?;
                    let format = if path.extension().is_some_and(|e| e == "toml") {
                        Format::Toml
                    } else {
                        Format::Json
                    };
                    Ok(Some(Raw { text, format }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(unreadable(format!("cannot read it: {e}"))),
            },
            Self::Registry => registry::read().map_err(unreadable),
            Self::ManagedPreferences(path) => managed_preferences(path).map_err(unreadable),
        }
    }
}

/// A policy as read, not parsed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw {
    pub(crate) text: String,
    pub(crate) format: Format,
}

impl Raw {
    pub(crate) fn parse(&self, origin: &str) -> Result<Policy, PolicyError> {
        Policy::parse(&self.text, self.format, origin)
    }
}

/// A property list read as JSON (same fields, same checks). Only macOS has one.
fn managed_preferences(path: &Path) -> Result<Option<Raw>, String> {
    #[cfg(target_os = "macos")]
    {
        match plist::Value::from_file(path) {
            Ok(value) => {
                let json = serde_json::to_string(&value).map_err(|e| e.to_string())?;
                Ok(Some(Raw {
                    text: json,
                    format: Format::Json,
                }))
            }
            Err(e)
                if e.as_io()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!("cannot read it: {e}")),
        }
    }
    #[cfg(not(target_os = "macos"))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Group Policy writes one registry value per setting: `Server`, `SignInMode`,
/// `EnrollmentSecret`, `AllowSignInScreen`, `BandwidthLimit`, `ParallelParts`, `MaxFileSize`,
/// `AllowedStorageHosts` (multi-string), `Proxy`, `Autostart`, `Notifications`, `Locked`
/// (multi-string), and `WatchedFolders` (a JSON array, as in the policy file). They are turned
/// into the policy file's JSON, so every check is the same. Read on Windows only; the mapping
/// is tested everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) mod registry {
    use serde_json::{Map, Value, json};

    use super::Raw;

    /// One registry value, as read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum RegValue {
        Text(String),
        Texts(Vec<String>),
        Number(u32),
    }

    /// The policy JSON for the values under the key; errors name the value.
    pub(crate) fn to_json(values: &[(String, RegValue)]) -> Result<String, String> {
        let mut root = Value::Object(Map::new());
        for (name, value) in values {
            let text = || match value {
                RegValue::Text(t) => Ok(json!(t)),
                _ => Err(format!("value {name} must be a string (REG_SZ)")),
            };
            let texts = || match value {
                RegValue::Texts(t) => Ok(json!(t)),
                RegValue::Text(t) => Ok(json!([t])),
                _ => Err(format!("value {name} must be a list (REG_MULTI_SZ)")),
            };
            let number = || match value {
                RegValue::Number(n) => Ok(json!(n)),
                _ => Err(format!("value {name} must be a number (REG_DWORD)")),
            };
            let flag = || number().map(|n| Value::Bool(n != json!(0)));
            let size = || text().or_else(|_| number());
            let (path, value): (&[&str], Value) = match name.as_str() {
                "Server" => (&["server"], text()?),
                "Proxy" => (&["proxy"], text()?),
                "Autostart" => (&["autostart"], flag()?),
                "Notifications" => (&["notifications"], flag()?),
                "AllowedStorageHosts" => (&["allowed_storage_hosts"], texts()?),
                "Locked" => (&["locked"], texts()?),
                "WatchedFolders" => {
                    let folders = serde_json::from_str(text()?.as_str().unwrap_or_default())
                        .map_err(|e| format!("value WatchedFolders is not a JSON array: {e}"))?;
                    (&["watched_folders"], folders)
                }
                "SignInMode" => (&["sign_in", "mode"], text()?),
                "EnrollmentSecret" => (&["sign_in", "enrollment_secret"], text()?),
                "AllowSignInScreen" => (&["sign_in", "allow_sign_in_screen"], flag()?),
                "SsoIssuer" => (&["sign_in", "sso", "issuer"], text()?),
                "SsoClientId" => (&["sign_in", "sso", "client_id"], text()?),
                "BandwidthLimit" => (&["limits", "bandwidth"], size()?),
                "MaxFileSize" => (&["limits", "max_file_size"], size()?),
                "ParallelParts" => (&["limits", "parallel_parts"], number()?),
                other => return Err(format!("unknown value {other}")),
            };
            insert_at(&mut root, path, value);
        }
        serde_json::to_string_pretty(&root).map_err(|e| e.to_string())
    }

    /// Sets `root.a.b.c = value`, making the objects on the way.
    fn insert_at(root: &mut Value, path: &[&str], value: Value) {
        let (last, parents) = path.split_last().expect("a path has a name");
        let mut at = root;
        for name in parents {
            at = at
                .as_object_mut()
                .expect("policy sections are objects")
                .entry(*name)
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let Some(object) = at.as_object_mut() {
            object.insert((*last).to_owned(), value);
        }
    }

    /// The policy under `HKLM\SOFTWARE\Policies\ValetUpload`; `None` when the key is absent.
    #[cfg(windows)]
    pub(crate) fn read() -> Result<Option<Raw>, String> {
        use winreg::RegKey;
        use winreg::enums::{HKEY_LOCAL_MACHINE, RegType};

        let key = match RegKey::predef(HKEY_LOCAL_MACHINE).open_subkey(super::REGISTRY_KEY) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open the key: {e}")),
        };
        let mut values = Vec::new();
        for item in key.enum_values() {
            let (name, raw) = item.map_err(|e| format!("cannot read the key: {e}"))?;
            let value = match raw.vtype {
                RegType::REG_DWORD => RegValue::Number(
                    key.get_value(&name)
                        .map_err(|e| format!("value {name}: {e}"))?,
                ),
                RegType::REG_MULTI_SZ => RegValue::Texts(
                    key.get_value(&name)
                        .map_err(|e| format!("value {name}: {e}"))?,
                ),
                _ => RegValue::Text(
                    key.get_value(&name)
                        .map_err(|e| format!("value {name}: {e}"))?,
                ),
            };
            values.push((name, value));
        }
        if values.is_empty() {
            return Ok(None);
        }
        to_json(&values).map(|text| {
            Some(Raw {
                text,
                format: super::Format::Json,
            })
        })
    }

    #[cfg(not(windows))]
    pub(crate) fn read() -> Result<Option<Raw>, String> {
        Ok(None)
    }
}
