//! Where the engine keeps its files, and the non-secret sign-in settings.
//!
//! The data directory holds `journal.sqlite` (see [`crate::Journal`]), `signin.json` (server URL
//! and account name) and `signin.lock` (empty; locked while a process refreshes the sign-in, see
//! [`crate::Session`]). Secrets never go there: the refresh token is in the OS keyring.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the sign-in settings in the data directory.
pub const SIGN_IN_FILE: &str = "signin.json";

/// File name, in the data directory, of the lock that processes sharing a sign-in take in turn
/// to refresh it. Empty; never removed (a process may be waiting on it).
pub const SIGN_IN_LOCK_FILE: &str = "signin.lock";

/// The OS's per-user data directory for Valet Upload (`~/.local/share/valet-upload` on Linux),
/// used unless the caller names another one.
pub fn default_data_dir() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "valet-upload")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| Error::Settings {
            path: PathBuf::from("~"),
            detail: "no home directory to keep the data directory in; pass --data-dir".into(),
        })
}

/// Creates the data directory (and its parents) when missing.
pub fn ensure_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Settings {
        path: dir.to_path_buf(),
        detail: format!("cannot create the data directory: {e}"),
    })
}

/// Who is signed in where. Not secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignIn {
    /// The service URL, normalized (`https://valet.example.com/`).
    pub server: String,
    /// The account name.
    pub user: String,
}

impl SignIn {
    /// The keyring account of this sign-in: `{user}@{server}` (server without trailing `/`).
    pub fn keyring_account(&self) -> String {
        format!("{}@{}", self.user, self.server.trim_end_matches('/'))
    }

    /// The saved sign-in in `data_dir`, or `None` when nobody signed in.
    pub fn load(data_dir: &Path) -> Result<Option<Self>> {
        let path = data_dir.join(SIGN_IN_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Settings {
                    path,
                    detail: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Settings {
                path,
                detail: format!("not a valid sign-in file ({e}); run `valet login` again"),
            })
    }

    /// Saves this sign-in in `data_dir` (created when missing), replacing any other.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        ensure_data_dir(data_dir)?;
        let path = data_dir.join(SIGN_IN_FILE);
        let tmp = data_dir.join(format!("{SIGN_IN_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Settings {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        // Write then rename, so a crash never leaves half a file.
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::Settings {
                path,
                detail: e.to_string(),
            })
    }

    /// Forgets the saved sign-in; forgetting a missing one is not an error.
    pub fn remove(data_dir: &Path) -> Result<()> {
        let path = data_dir.join(SIGN_IN_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Settings {
                path,
                detail: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        assert_eq!(SignIn::load(&data).unwrap(), None);
        let s = SignIn {
            server: "http://127.0.0.1:8080/".into(),
            user: "dev".into(),
        };
        s.save(&data).unwrap();
        assert_eq!(SignIn::load(&data).unwrap(), Some(s.clone()));
        assert_eq!(s.keyring_account(), "dev@http://127.0.0.1:8080");
        SignIn::remove(&data).unwrap();
        SignIn::remove(&data).unwrap();
        assert_eq!(SignIn::load(&data).unwrap(), None);
    }

    #[test]
    fn corrupt_sign_in_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGN_IN_FILE), b"{not json").unwrap();
        let e = SignIn::load(dir.path()).unwrap_err();
        assert_eq!(e.code(), "settings");
        assert!(e.to_string().contains("valet login"), "{e}");
    }
}
