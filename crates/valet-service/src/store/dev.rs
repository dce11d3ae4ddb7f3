//! An embedded S3 store for `valet-service dev` and tests: s3s-fs serving a directory on a
//! loopback port, with random credentials that never leave the process.
//!
//! s3s-fs enforces SigV4 signatures and expiry, but does not check part checksums on
//! `UploadPart` and lists parts without ETags; hence `verify = "read-back"` for it.
//!
//! The port and credentials are kept in `store.json` beside the store's directory and reused
//! on the next start: keys of open uploads name the store's origin, and s3s-fs lets only the
//! access key that created a multipart upload continue it, so both must survive a restart for
//! clients to resume.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::Error;
use crate::config::StoreCredentials;

/// A running embedded store. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct DevStore {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: Url,
    /// The random credentials it accepts.
    pub credentials: StoreCredentials,
    stop: watch::Sender<bool>,
}

impl DevStore {
    /// Serves `root` (created when missing; buckets are its subdirectories) on 127.0.0.1, at
    /// the port of the last start when it is free, else at a free one.
    pub async fn start(root: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| Error::StoreUnavailable {
            operation: "start embedded store",
            message: format!("{e:?}"),
        })?;
        let identity_file = root.with_extension("json");
        let saved = Identity::load(&identity_file);
        let credentials = match &saved {
            Some(saved) => saved.credentials(),
            None => StoreCredentials {
                access_key_id: format!("dev{}", crate::auth::random_id()),
                secret_access_key: crate::auth::random_text(30),
                session_token: None,
            },
        };
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
            ));
            builder.build()
        };
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let listener = match &saved {
            Some(saved) => match bind_soon(loopback(saved.port)).await {
                Ok(listener) => Ok(listener),
                Err(e) => {
                    tracing::warn!(port = saved.port, error = %e,
                        "embedded store: last port is taken; uploads left open cannot resume");
                    TcpListener::bind(loopback(0)).await
                }
            },
            None => TcpListener::bind(loopback(0)).await,
        }
        .map_err(|e| Error::io("binding the embedded store", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("embedded store address", e))?;
        Identity::save(&identity_file, addr.port(), &credentials)?;
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "embedded store: accept failed");
                            continue;
                        }
                    },
                    _ = stopped.changed() => break,
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "embedded store: connection ended");
                    }
                });
            }
        });
        let endpoint = Url::parse(&format!("http://{addr}"))
            .map_err(|e| Error::Config(format!("embedded store address: {e}")))?;
        Ok(Self {
            endpoint,
            credentials,
            stop,
        })
    }
}

/// Binds `addr`, retrying for a moment: right after a restart the previous listener may not be
/// closed yet.
async fn bind_soon(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 30 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

/// What the embedded store must keep across restarts (a local dev secret: file mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    port: u16,
    access_key_id: String,
    secret_access_key: String,
}

impl Identity {
    /// The saved identity, or `None` on a first start or an unreadable file (then a new one).
    fn load(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(identity) => Some(identity),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "embedded store: identity unreadable, making a new one");
                None
            }
        }
    }

    fn credentials(&self) -> StoreCredentials {
        StoreCredentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
        }
    }

    fn save(path: &Path, port: u16, credentials: &StoreCredentials) -> Result<(), Error> {
        let identity = Self {
            port,
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
        };
        let text = serde_json::to_string_pretty(&identity)
            .map_err(|e| Error::Config(format!("embedded store identity: {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = |mut file: std::fs::File| std::io::Write::write_all(&mut file, text.as_bytes());
        options
            .open(path)
            .and_then(write)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

impl Drop for DevStore {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
