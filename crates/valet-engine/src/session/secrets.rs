//! Where the refresh token lives between runs: the OS keyring, behind a small trait so that unit
//! tests (and machines without a keyring) can use an in-memory store.
//!
//! Entries are keyed by service [`KEYRING_SERVICE`] and account `{user}@{server}`.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// The keyring service name of every entry the engine writes.
pub const KEYRING_SERVICE: &str = "valet-upload";

/// A place to keep one secret per account.
pub trait SecretStore: Send + Sync {
    /// The secret saved for `account`, or `None` when there is none.
    fn get(&self, account: &str) -> Result<Option<SecretString>>;
    /// Saves (or replaces) the secret for `account`.
    fn set(&self, account: &str, secret: &SecretString) -> Result<()>;
    /// Forgets the secret for `account`; forgetting a missing one is not an error.
    fn delete(&self, account: &str) -> Result<()>;
}

/// The operating system's keyring (Secret Service on Linux, Keychain on macOS, Credential
/// Manager on Windows) through the `keyring` crate.
///
/// On a Linux machine without a Secret Service (no D-Bus session, no unlocked keyring) every call
/// fails with [`Error::KeyringUnavailable`], whose message names the alternative (an API token
/// in `VALET_SERVER` + `VALET_TOKEN`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeyring;

impl OsKeyring {
    fn entry(account: &str) -> Result<keyring::Entry> {
        keyring::Entry::new(KEYRING_SERVICE, account).map_err(keyring_error)
    }
}

impl SecretStore for OsKeyring {
    fn get(&self, account: &str) -> Result<Option<SecretString>> {
        match Self::entry(account)?.get_password() {
            Ok(secret) => Ok(Some(SecretString::from(secret))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(e)),
        }
    }

    fn set(&self, account: &str, secret: &SecretString) -> Result<()> {
        Self::entry(account)?
            .set_password(secret.expose_secret())
            .map_err(keyring_error)
    }

    fn delete(&self, account: &str) -> Result<()> {
        match Self::entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error(e)),
        }
    }
}

/// Keyring errors never carry the secret itself; `BadEncoding` carries bytes, so it is not shown.
fn keyring_error(e: keyring::Error) -> Error {
    match e {
        keyring::Error::PlatformFailure(inner) | keyring::Error::NoStorageAccess(inner) => {
            Error::KeyringUnavailable {
                detail: inner.to_string(),
            }
        }
        keyring::Error::BadEncoding(_) => Error::Keyring {
            detail: "the saved entry is not valid UTF-8".into(),
        },
        other => Error::Keyring {
            detail: other.to_string(),
        },
    }
}

/// Secrets kept in this process only (tests, or a session that must not touch the OS keyring).
#[derive(Default)]
pub struct MemoryKeyring {
    entries: Mutex<HashMap<String, SecretString>>,
}

impl MemoryKeyring {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SecretString>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for MemoryKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyring").finish_non_exhaustive()
    }
}

impl SecretStore for MemoryKeyring {
    fn get(&self, account: &str) -> Result<Option<SecretString>> {
        Ok(self.lock().get(account).cloned())
    }

    fn set(&self, account: &str, secret: &SecretString) -> Result<()> {
        self.lock().insert(account.to_owned(), secret.clone());
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<()> {
        self.lock().remove(account);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trip() {
        let store = MemoryKeyring::new();
        assert!(store.get("a@s").unwrap().is_none());
        store.set("a@s", &SecretString::from("one")).unwrap();
        store.set("a@s", &SecretString::from("two")).unwrap();
        let got = store.get("a@s").unwrap().expect("saved");
        assert_eq!(got.expose_secret(), "two", "set replaces");
        assert!(store.get("b@s").unwrap().is_none(), "accounts are separate");
        store.delete("a@s").unwrap();
        store.delete("a@s").unwrap();
        assert!(store.get("a@s").unwrap().is_none());
        assert!(!format!("{store:?}").contains("two"));
    }

    #[test]
    fn unavailable_keyring_names_the_alternative() {
        let e = keyring_error(keyring::Error::PlatformFailure("no D-Bus".into()));
        assert_eq!(e.code(), "keyring_unavailable");
        assert!(e.to_string().contains("VALET_TOKEN"), "{e}");
    }
}
