//! What the service reads from stores: S3 XML (errors, initiate, list parts, complete), Azure
//! XML (block lists, errors) and GCS JSON (objects, listings), with the part number it finds in
//! each Azure block id and the CRC32C values GCS reports.
//!
//! Input: byte 0 picks the answer type, the rest is the document (read as text, lossily, as
//! the service's HTTP client does).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use valet_service::fuzzing::{StoreAnswer, azure_part_of, gcs_crc32c, store_answer};
use valet_service::store::{azure::block_id, gcs::crc32c_b64};

fuzz_target!(|data: &[u8]| {
    let [which, document @ ..] = data else {
        return;
    };
    let which = StoreAnswer::ALL[usize::from(*which) % StoreAnswer::ALL.len()];
    let text = String::from_utf8_lossy(document);
    let Ok(found) = store_answer(which, &text) else {
        return;
    };
    if let Some(root) = &found.root {
        assert!(
            !root.contains(|c: char| c.is_whitespace() || c == '>' || c == '/'),
            "root name {root:?}"
        );
        assert!(
            text.contains(&format!("<{root}")),
            "root {root:?} not in the document"
        );
    }
    for id in &found.block_ids {
        block_id_names_one_part(id);
    }
    for crc in &found.crc32c {
        if let Some(value) = gcs_crc32c(crc) {
            assert_eq!(&crc32c_b64(value), crc, "two spellings of one CRC32C");
        }
    }
});

/// A block id names part N of an upload only when it is exactly the id the service gives part
/// N: two ids for one part would let a client's block stand in for another.
fn block_id_names_one_part(id: &str) {
    let tags: Vec<String> = STANDARD
        .decode(id)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| raw.rsplit_once('-').map(|(tag, _)| tag.to_owned()))
        .into_iter()
        .chain(["t".to_owned(), String::new()])
        .collect();
    for tag in tags {
        if let Some(number) = azure_part_of(&tag, id) {
            assert_eq!(block_id(&tag, number), id, "block id {id:?} of tag {tag:?}");
        }
    }
}
