//! Starting and stopping the service: database, store, router, listener (TLS or loopback
//! HTTP), sweeper, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::{Config, StoreCredentials, TlsConfig};
use crate::db::Db;
use crate::store::{S3Store, Store, Stores};
use crate::{Error, sweeper};

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A started service. Stop it with [`Running::shutdown`]; dropping it stops it too, abruptly.
#[derive(Debug)]
pub struct Running {
    /// `http://127.0.0.1:PORT` or `https://…`: the base URL clients use.
    pub url: String,
    /// The bound address (the real port when `listen` asked for port 0).
    pub local_addr: SocketAddr,
    /// The state the handlers share (database, store, config), for tests and tools.
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), Error>>,
    sweeper: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to 10 s), stops the sweeper.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server ends (after a shutdown signal or a fatal error).
    pub async fn wait(self) -> Result<(), Error> {
        let result = match self.server.await {
            Ok(result) => result,
            Err(e) => Err(Error::Refused(format!("server task failed: {e}"))),
        };
        let _ = self.stop.send(true);
        let _ = self.sweeper.await;
        self.state.db().close().await;
        result
    }

    /// A sender that stops the service when `true` is sent (for signal handlers).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Starts the service: opens the database (applying migrations), checks the store (creating
/// the bucket when `store.create_bucket`), binds `config.listen`, and serves. Returns once
/// the listener is bound, so the caller may announce readiness.
///
/// Refuses plain HTTP on a non-loopback address: tokens and keys would cross the network in
/// clear.
pub async fn start(config: Config, credentials: &StoreCredentials) -> Result<Running, Error> {
    let store = Store::S3(Box::new(S3Store::new(&config.store, credentials)?));
    start_with_store(config, store).await
}

/// Like [`start`], for any store (see [`Store::from_config`]).
pub async fn start_with_store(config: Config, store: Store) -> Result<Running, Error> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        return Err(Error::Refused(format!(
            "listen = {} is not a loopback address and [tls] is not set; \
             plain HTTP would expose tokens and keys",
            config.listen
        )));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::io(
            format!("creating data_dir {}", config.data_dir.display()),
            e,
        )
    })?;
    let db = Db::open(&config.database_path()).await?;
    let stores = Stores::new(store, &config)?;
    for configured in stores.all() {
        if configured.config.create_bucket {
            configured.store.ensure_bucket().await?;
        }
    }
    let tls = match &config.tls {
        Some(tls) => Some(rustls_config(tls)?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("configuring the listener", e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;

    let state = AppState::new(db, stores, config);
    let app = api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = watch::channel(false);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let mut on_stop = stopped.clone();
            let graceful = handle.clone();
            tokio::spawn(async move {
                let _ = on_stop.wait_for(|stop| *stop).await;
                graceful.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            let server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
            tokio::spawn(async move {
                server
                    .serve(app)
                    .await
                    .map_err(|e| Error::io("serving HTTPS", e))
            })
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| Error::io("configuring the listener", e))?;
            let mut on_stop = stopped.clone();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = on_stop.wait_for(|stop| *stop).await;
                    })
                    .await
                    .map_err(|e| Error::io("serving HTTP", e))
            })
        }
    };
    let sweeper = sweeper::spawn(state.clone(), stopped);
    Ok(Running {
        url: format!("{scheme}://{local_addr}"),
        local_addr,
        state,
        stop,
        server,
        sweeper,
    })
}

/// TLS with the ring provider (no C toolchain beyond what ring needs, no OpenSSL).
fn rustls_config(tls: &TlsConfig) -> Result<axum_server::tls_rustls::RustlsConfig, Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| Error::Config(format!("tls.cert: {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls.cert: {} holds no certificate",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| Error::Config(format!("tls.key: {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("tls.key does not fit tls.cert: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(server),
    ))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
