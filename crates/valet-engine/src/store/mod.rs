//! Store adapters: each turns "send part N of these bytes with this key" into the store's HTTP
//! request and reads its answer. Everything else (scheduling, hashing, retries, key renewal,
//! journal) is shared and lives in [`crate::upload`].

pub(crate) mod s3;
