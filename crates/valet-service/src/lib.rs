//! The valet service: signs users in, issues keys (pre-signed URLs) that let a client send
//! one part of one upload straight to object storage, and verifies the result when the client
//! reports completion. File bytes never pass through it.
//!
//! ```text
//! client ──sign in / create / keys / complete──▶ service ──create / list / complete / head──▶ store
//!    └──────────────── PUT part bytes with a key ───────────────────────────────────────────▶ store
//! ```
//!
//! Start it in-process with [`dev::start`] (embedded store, for tests and newcomers) or
//! [`server::start`] (a configured S3 store).
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod checksum;
pub mod config;
pub mod db;
pub mod dev;
mod error;
/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
pub mod openapi;
pub mod server;
pub mod sso;
pub mod store;
pub mod sweeper;
pub mod throttle;

pub use error::Error;

/// Makes ring the process's TLS crypto provider (one provider for the whole workspace: reqwest
/// is built without one of its own). Idempotent; call before building any HTTP client.
pub fn install_tls_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The log filter for `VALET_LOG`-style directives (`info`, `debug`, `trace`, ...).
///
/// The embedded store's own crates stay at `warn` unless named explicitly: at debug level they
/// log whole requests, pre-signed query (signature) included.
pub fn log_filter(directives: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::new(directives);
    for quiet in ["s3s", "s3s_fs"] {
        if !directives.contains(quiet)
            && let Ok(directive) = format!("{quiet}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The line printed once the service accepts connections (docs/CONTRACTS.md).
pub fn ready_line(url: &str) -> String {
    format!("valet-service ready on {url}")
}
