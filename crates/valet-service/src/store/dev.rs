//! An embedded S3 store for `valet-service dev` and tests: s3s-fs serving a directory on a
//! loopback port, with random credentials that never leave the process.
//!
//! s3s-fs enforces SigV4 signatures and expiry, but does not check part checksums on
//! `UploadPart` and lists parts without ETags; hence `verify = "read-back"` for it.

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
    /// Serves `root` (created when missing; buckets are its subdirectories) on 127.0.0.1 at a
    /// free port.
    pub async fn start(root: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| Error::StoreUnavailable {
            operation: "start embedded store",
            message: format!("{e:?}"),
        })?;
        let credentials = StoreCredentials {
            access_key_id: format!("dev{}", crate::auth::random_id()),
            secret_access_key: crate::auth::random_text(30),
            session_token: None,
        };
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
            ));
            builder.build()
        };
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| Error::io("binding the embedded store", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("embedded store address", e))?;
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

impl Drop for DevStore {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
