//! End-to-end tests: the real `valet` CLI, the real `valet-service` and real stores: SeaweedFS
//! (S3: SigV4 signatures, expiry, per-part checksums), Azurite (Azure Blob: SAS signatures,
//! expiry, block MD5s) and gcp-storage-emulator (GCS: checks no signature, expiry or hash; see
//! `valet_tests::gcs` for what is proven instead). No mocks. The tests marked "every store" run
//! once per store, as `…::s3`, `…::azure` and `…::gcs`.
//!
//! Run with `scripts/test.sh` (README), which installs the store and builds the binaries first.

mod helpers;

/// `valet put`s started at once with one sign-in take turns refreshing; the sign-in survives.
mod concurrent_sign_in;
/// A managed device enrolls with the secret from the machine's policy, uploads under its own
/// account, and stops with a clear message once an administrator revokes it.
mod device_enrollment;
/// Every store. Keys living 2 s: a slowed upload outlives many keys and completes; the audit
/// log shows renewals.
mod key_renewal;
/// No OS keyring (a headless server): login says so; API tokens from the environment work.
mod no_keyring;
/// Every store. A store that takes few parts gets larger parts than asked for; `valet` says so,
/// follows the service's layout, and the assembled object is the file.
mod part_size_fits_the_store;
/// The policy's proxy carries the service's and the store's connections, and nothing goes
/// around it.
mod policy_proxy;
/// The machine's policy: locked options refused, the largest file and the storage hosts
/// enforced before a byte is sent, `valet policy check` naming the field.
mod policy_rules;
/// Every store. SIGKILL in the middle of a 210 MiB upload; `valet put` again and `valet resume`
/// finish it.
mod resume_after_kill;
/// Sign-in through the OS keyring, and no secret in any log line even at TRACE.
mod secrets_stay_secret;
/// Every store. A source file rewritten during its upload is never completed.
mod source_changed;
/// Every store. The store refuses bytes other than those the key was issued for, and keys used
/// elsewhere; where an emulator cannot, the service refuses the upload at completion.
mod store_rejects_tampering;
/// A store without object tagging or checksum checks (rclone's `serve s3`): an object it
/// replaced with the tag document is refused; with tagging off, objects are read back.
mod store_without_tagging;
/// Every store. Files of 0 B, 1 B, part size − 1, part size, part size + 1 and 210 MiB arrive
/// byte-identical.
mod upload_sizes;
/// Every store. One user cannot see, key, complete or abort another's upload.
mod user_isolation;
/// A watched folder renamed away and back is reported and scanned again; after-upload moves.
mod watch_folders;
/// 10,000 files dropped at once into nested folders: each sent exactly once; peak RSS printed.
mod watch_many_files;
/// A rename inside a watched folder sends nothing; an edit after upload sends a new version.
mod watch_rename_edit;
/// A watch killed with SIGKILL and restarted sends nothing twice and catches up.
mod watch_restart;
/// The service unreachable (its link cut): files wait, are retried, and go when it is back.
mod watch_service_down;
/// A file appended to slowly over 10 s is sent once, complete, never a partial version.
mod watch_slow_writer;
/// What the folder-watch tests share: a running `valet watch --json`, store listings.
mod watch_support;
/// Partial, temporary, lock, swap and hidden files are never sent; a download renamed to its
/// final name is.
mod watch_temp_names;
