//! `valet-service dev`: the whole service on one machine with nothing installed. Everything
//! lives under one directory:
//!
//! - `valet.db`: the SQLite database,
//! - `store/`: the embedded S3 store's data (bucket `valet`),
//! - `dev-password`: the password of the account `dev`, made on first run and reused.
//!
//! Tests start it in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), valet_service::Error> {
//! let dir = std::path::Path::new("/tmp/valet-dev");
//! let dev = valet_service::dev::start(dir, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{} as {} / {}", dev.url(), dev.user, dev.password);
//! dev.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::config::{
    Config, KeyConfig, Limits, StoreConfig, StoreKindConfig, TokenConfig, UploadConfig, VerifyMode,
};
use crate::db::{self, Db};
use crate::server::{self, Running};
use crate::store::dev::DevStore;
use crate::{Error, auth};

/// The account `dev` creates.
pub const DEV_USER: &str = "dev";
/// The bucket of the embedded store.
pub const DEV_BUCKET: &str = "valet";

/// A running dev service and its embedded store.
#[derive(Debug)]
pub struct DevServer {
    /// The service.
    pub running: Running,
    /// The embedded store (stops when dropped).
    pub store: DevStore,
    /// Account name, `dev`.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl DevServer {
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> &str {
        &self.running.url
    }

    /// Stops the service, then the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        let result = self.running.shutdown().await;
        drop(self.store);
        result
    }
}

/// The configuration `dev` runs with: everything under `data_dir`, the embedded store at
/// `store_endpoint`, read-back verification (s3s-fs does not check part checksums), no tags
/// (s3s-fs has no tagging).
pub fn dev_config(data_dir: &Path, listen: SocketAddr, store_endpoint: url::Url) -> Config {
    Config {
        listen,
        data_dir: data_dir.to_owned(),
        tls: None,
        tokens: TokenConfig::default(),
        keys: KeyConfig::default(),
        uploads: UploadConfig::default(),
        limits: Limits::default(),
        throttle: Default::default(),
        store: StoreConfig {
            kind: StoreKindConfig::S3,
            endpoint: store_endpoint,
            region: "us-east-1".to_owned(),
            bucket: DEV_BUCKET.to_owned(),
            path_style: true,
            prefix: "users".to_owned(),
            create_bucket: true,
            verify: VerifyMode::ReadBack,
            tag_objects: false,
            credentials_file: None,
            azure: Default::default(),
            gcs: Default::default(),
            max_parts: None,
        },
        stores: Default::default(),
        routing: Default::default(),
        enrollment: Vec::new(),
        sso: None,
    }
}

/// Starts `dev` on `listen` (use port 0 for a free port) with data under `data_dir`.
pub async fn start(data_dir: &Path, listen: SocketAddr) -> Result<DevServer, Error> {
    start_with(data_dir, listen, |_| {}).await
}

/// Like [`start`], with a chance to change the configuration first (short key or token
/// lifetimes in tests, limits, ...).
pub async fn start_with(
    data_dir: &Path,
    listen: SocketAddr,
    adjust: impl FnOnce(&mut Config),
) -> Result<DevServer, Error> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    let store = DevStore::start(&data_dir.join("store")).await?;
    let mut config = dev_config(data_dir, listen, store.endpoint.clone());
    adjust(&mut config);
    config.validate()?;
    let password = ensure_dev_account(&config).await?;
    let running = server::start(config, &store.credentials).await?;
    Ok(DevServer {
        running,
        store,
        user: DEV_USER.to_owned(),
        password,
        data_dir: data_dir.to_owned(),
    })
}

/// Creates the `dev` account with a random password kept in `dev-password`, or reuses both.
async fn ensure_dev_account(config: &Config) -> Result<String, Error> {
    let password_file = config.data_dir.join("dev-password");
    let password = match std::fs::read_to_string(&password_file) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => {
            let password = auth::random_text(18);
            write_private(&password_file, &password)?;
            password
        }
    };
    let db = Db::open(&config.database_path()).await?;
    let now = OffsetDateTime::now_utc();
    let result = match db::user_password_hash(&db, DEV_USER).await {
        Ok(None) => auth::add_user(&db, DEV_USER, &password, now).await,
        // The file is the truth: if it was replaced, the account follows it.
        Ok(Some(hash)) => {
            if auth::verify_password(password.clone(), Some(hash)).await {
                Ok(())
            } else {
                let hash = auth::hash_password(password.clone()).await?;
                db::set_user_password_hash(&db, DEV_USER, &hash)
                    .await
                    .map(drop)
            }
        }
        Err(e) => Err(e),
    };
    db.close().await;
    result.map(|()| password)
}

/// Writes a secret readable only by its owner (where the platform has such permissions).
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    writeln!(file, "{text}").map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
