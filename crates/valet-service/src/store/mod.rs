//! Object stores. One module per store protocol; S3 (and S3-compatible) for now, plus an
//! embedded S3 store for `dev`.

pub mod azure_sas;
pub mod dev;
pub mod gcs_sign;
pub mod s3;
mod xml;

pub use s3::S3Store;
