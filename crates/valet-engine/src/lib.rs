//! The Valet Upload client core: sign-in, keys, chunked parallel resumable uploads, journal.
//!
//! The client never sends file bytes through the valet service. It signs in ([`Session`]),
//! creates an upload, asks the service for a key (a pre-signed S3 `UploadPart` URL that binds
//! the part's SHA-256) for each part, sends the part straight to the store, journals the store's
//! receipt ([`Journal`]), and finally asks the service to complete the upload, which it does
//! only after checking with the store ("verified").
//!
//! ```text
//!  file ─▶ reader ─▶ part SHA-256 ─▶ keys (service) ─▶ N × PUT (store) ─▶ journal
//!                                                                        └─▶ complete (service)
//! ```
//!
//! The engine has no UI and never prints: it reports through [`Events`]. Errors are one
//! [`Error`] type with a stable [`Error::code`]. See [`Engine`] for the main flow.
#![warn(missing_docs, unreachable_pub)]

mod error;
mod events;
/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod journal;
pub mod policy;
mod session;
mod settings;
pub mod size;
mod source;
mod store;
pub mod transfers;
mod upload;
pub mod urls;
pub mod watch;

pub use error::{Error, Result};
pub use events::{Event, Events};
pub use http::{MAX_REPLY_BYTES, RetryPolicy, install_tls_provider, set_proxy};
pub use journal::{EntryState, JOURNAL_FILE, Journal, JournalEntry, NewEntry};
pub use session::{
    KEYRING_SERVICE, KeyLease, MemoryKeyring, OsKeyring, SSO_TIMEOUT, SecretStore, Session,
    SsoParams, SsoSignIn, StoreTarget, renew_at,
};
pub use settings::{SIGN_IN_FILE, SIGN_IN_LOCK_FILE, SignIn, default_data_dir, ensure_data_dir};
pub use source::{FileStamp, check_unchanged};
/// The upload's read and part hashing without the network, for `benches/read_hash.rs`.
#[doc(hidden)]
pub use upload::read_and_hash;
pub use upload::{Engine, MAX_PARALLEL, MEMORY_BUDGET, PutOptions, RateLimit, UploadReport};

/// Re-exported so that shells can hold secrets without another dependency.
pub use secrecy::{ExposeSecret, SecretString};
