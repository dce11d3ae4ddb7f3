//! Entry points for the fuzz targets (`fuzz/`): the service's private readers of store answers
//! and request checks, called as the service calls them. Built only with the `fuzzing` feature.

use crate::store::{azure, gcs, xml};

/// A store answer the service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAnswer {
    /// S3 `<Error>`.
    S3Error,
    /// S3 `<InitiateMultipartUploadResult>`.
    S3Initiate,
    /// S3 `<ListPartsResult>`.
    S3ListParts,
    /// S3 `<CompleteMultipartUploadResult>` (or an `<Error>` in a 200).
    S3Complete,
    /// Azure `<BlockList>`.
    AzureBlockList,
    /// Azure `<Error>`.
    AzureError,
    /// GCS object resource (JSON).
    GcsObject,
    /// GCS object listing (JSON).
    GcsList,
}

impl StoreAnswer {
    /// Every kind, for picking one from fuzz input.
    pub const ALL: [Self; 8] = [
        Self::S3Error,
        Self::S3Initiate,
        Self::S3ListParts,
        Self::S3Complete,
        Self::AzureBlockList,
        Self::AzureError,
        Self::GcsObject,
        Self::GcsList,
    ];
}

/// Reads `text` as the service reads the answer `which`; `Err` when it refuses it. Block ids
/// and CRC32C values found are returned for the target to check.
pub fn store_answer(which: StoreAnswer, text: &str) -> Result<Found, String> {
    let mut found = Found {
        root: xml::root_name(text).map(str::to_owned),
        ..Found::default()
    };
    match which {
        StoreAnswer::S3Error => drop(xml::parse::<xml::S3ErrorBody>(text)?),
        StoreAnswer::S3Initiate => drop(xml::parse::<xml::InitiateMultipartUploadResult>(text)?),
        StoreAnswer::S3ListParts => drop(xml::parse::<xml::ListPartsResult>(text)?),
        StoreAnswer::S3Complete => drop(xml::parse::<xml::CompleteMultipartUploadResult>(text)?),
        StoreAnswer::AzureBlockList => {
            let list: azure::BlockListXml =
                quick_xml::de::from_str(text).map_err(|e| e.to_string())?;
            let blocks = list.committed.blocks.iter().chain(&list.uncommitted.blocks);
            found.block_ids = blocks.map(|b| b.name.clone()).collect();
        }
        StoreAnswer::AzureError => {
            drop(quick_xml::de::from_str::<azure::ErrorXml>(text).map_err(|e| e.to_string())?)
        }
        StoreAnswer::GcsObject => {
            let object: gcs::ObjectJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
            found.crc32c = object.crc32c.into_iter().collect();
        }
        StoreAnswer::GcsList => {
            let list: gcs::ListJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
            found.crc32c = list.items.into_iter().filter_map(|o| o.crc32c).collect();
        }
    }
    Ok(found)
}

/// What [`store_answer`] found worth checking further.
#[derive(Debug, Default)]
pub struct Found {
    /// The document's root element name, as the S3 adapter sees it.
    pub root: Option<String>,
    /// Azure block ids.
    pub block_ids: Vec<String>,
    /// GCS CRC32C values (base64).
    pub crc32c: Vec<String>,
}

/// The part number an Azure block id names for the upload tagged `tag`.
pub fn azure_part_of(tag: &str, id: &str) -> Option<u32> {
    azure::part_of(tag, id)
}

/// A GCS CRC32C value (base64 of 4 big-endian bytes), decoded.
pub fn gcs_crc32c(b64: &str) -> Option<u32> {
    gcs::decode_crc32c(b64)
}

/// The service's check of a content type against the allowed globs: `Ok` when accepted.
pub fn check_content_type(content_type: &str, allowed: &[String]) -> Result<(), String> {
    crate::api::uploads::check_content_type(content_type, allowed).map_err(|f| f.0.message)
}
