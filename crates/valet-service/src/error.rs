//! The service library's error type.
//!
//! When to use what:
//! - [`Error`] is what library functions return (config, database, store, startup). It carries
//!   what an operator needs to act, and never a secret: store errors hold the operation and the
//!   store's own error code, never the pre-signed URL.
//! - HTTP handlers turn it into a [`valet_protocol::ApiError`] (see `api::Failure`), which is
//!   what clients see; the mapping is in one place, `api::Failure::from`.
//! - The binary wraps everything in `anyhow` with context.

/// Everything that can go wrong inside the service library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the field.
    #[error("config: {0}")]
    Config(String),
    /// A database query failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store could not be reached or answered something unreadable.
    #[error("store {operation}: {message}")]
    StoreUnavailable {
        /// The S3 operation, e.g. `ListParts`.
        operation: &'static str,
        /// What went wrong; never contains a URL query or signature.
        message: String,
    },
    /// The store answered with an S3 error.
    #[error("store {operation}: HTTP {status} {code}: {message}")]
    StoreRejected {
        /// The S3 operation, e.g. `CompleteMultipartUpload`.
        operation: &'static str,
        /// HTTP status of the answer (200 when an `<Error>` came in a 200 body).
        status: u16,
        /// The S3 error code, e.g. `NoSuchUpload`, `InvalidPart`.
        code: String,
        /// The store's message.
        message: String,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The service refuses to start as configured (plain HTTP off loopback, bad TLS files).
    #[error("refusing to start: {0}")]
    Refused(String),
    /// A user-management command was given bad input (unknown user, bad name, bad token id).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The S3 error code when the store answered with one.
    pub fn store_code(&self) -> Option<&str> {
        match self {
            Self::StoreRejected { code, .. } => Some(code),
            _ => None,
        }
    }
}
