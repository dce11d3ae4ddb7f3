use valet_protocol::{MIB, UploadState, UploadStatus};
use valet_tests::api::Api;
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;
use valet_tests::store::StoreKind;

use crate::helpers::{on_every_store, world_on};

on_every_store!(the_part_size_grows_to_fit_the_stores_part_count);

/// Parts a deployment allows in this test (`store.max_parts`): far below any store's own
/// limit, so a file of tens of MiB already needs larger parts than asked for.
const MAX_PARTS: u32 = 6;

/// A 40 MiB file sent with `--part-size 1MiB` to a store that takes 6 parts: the service
/// chooses 7 MiB parts (the least whole MiB that fits, above S3's 5 MiB floor too, so every
/// store gets the same layout), `valet` says so on stderr and follows it, and the object the
/// store assembled (S3's completed multipart upload, Azure's committed blocks, GCS's composed
/// object) is the file, byte for byte. The same file at the default 8 MiB fits 6 parts, and
/// keeps its part size without a word.
fn the_part_size_grows_to_fit_the_stores_part_count(kind: StoreKind) {
    let options = ServiceOptions {
        max_parts: Some(MAX_PARTS),
        ..ServiceOptions::default()
    };
    let w = world_on(kind, "pia", options);
    let dir = tempfile::tempdir().unwrap();
    let size = 40 * MIB + 12_345;
    let small_parts = random_file(dir.path(), "small-parts.bin", size, 7);
    let default_parts = random_file(dir.path(), "default-parts.bin", size, 8);
    let api = Api::new(&w.service.url, &w.token);
    let store = w.service.store();

    let cases = [
        (&small_parts, Some("1MiB"), 7 * MIB, 6),
        (&default_parts, None, 8 * MIB, 6),
    ];
    for (file, asked, part_size, part_count) in cases {
        let mut args = vec!["put"];
        if let Some(asked) = asked {
            args.extend(["--part-size", asked]);
        }
        let path = file.display().to_string();
        args.push(&path);
        let run = w.valet.run_json(&args);
        let line = run.verified();
        let note = format!("parts of {} MiB instead of", part_size / MIB);
        if asked.is_some() {
            assert!(
                run.stderr
                    .contains(&format!("{note} 1 MiB ({part_count} parts)")),
                "{kind:?}: valet says the part size was raised: {}",
                run.stderr
            );
        } else {
            assert!(
                !run.stderr.contains("instead of"),
                "{kind:?}: a part size that fits is kept without a word: {}",
                run.stderr
            );
        }

        let upload_id = line["upload_id"].as_str().unwrap();
        let record: UploadStatus = api.get(&format!("/uploads/{upload_id}")).unwrap();
        assert_eq!(record.state, UploadState::Verified);
        assert_eq!(
            (record.layout.part_size, record.layout.part_count),
            (part_size, part_count),
            "{kind:?}: the layout the service chose and the client followed"
        );
        assert!(record.layout.part_count <= MAX_PARTS);
        eprintln!(
            "{kind:?}: {size} bytes, asked {}, service chose {} bytes x {} parts",
            asked.unwrap_or("the default"),
            record.layout.part_size,
            record.layout.part_count
        );

        let local_sha256 = sha256_file(file);
        assert_eq!(line["sha256"], local_sha256.as_str(), "{line}");
        let object = line["object"].as_str().unwrap();
        assert_eq!(
            store
                .object_digest(object)
                .expect("the object is in the store"),
            (size, local_sha256.clone()),
            "{kind:?}: the assembled object is the file, byte for byte"
        );
        assert_eq!(
            store.recorded_sha256(object).as_deref(),
            Some(local_sha256.as_str()),
            "{kind:?}: the object carries the file's sha256"
        );
    }
    let journaled: Vec<u64> = w
        .valet
        .status()
        .iter()
        .filter_map(|line| line["part_count"].as_u64())
        .collect();
    assert_eq!(
        journaled,
        [u64::from(MAX_PARTS); 2],
        "the journal holds the layout the service chose"
    );
}
