use std::time::Duration;

use valet_protocol::{UploadList, UploadState};
use valet_tests::api::Api;
use valet_tests::cli::parse_run;
use valet_tests::files::random_file;
use valet_tests::service::ServiceOptions;
use valet_tests::{PART_SIZE, wait_for};

use valet_tests::store::StoreKind;

use crate::helpers::{on_every_store, unfinished, world_on};

on_every_store!(a_file_rewritten_during_its_upload_is_never_completed);

fn a_file_rewritten_during_its_upload_is_never_completed(kind: StoreKind) {
    let w = world_on(kind, "cole", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let size = 8 * PART_SIZE;
    let file = random_file(dir.path(), "changing.bin", size, 1);
    let part_size = PART_SIZE.to_string();
    let (child, _) = w.valet.spawn(&[
        "put",
        "--json",
        "--part-size",
        &part_size,
        "--parallel",
        "1",
        "--bwlimit",
        "8388608",
        file.to_str().unwrap(),
    ]);

    wait_for(
        "the first part to be stored",
        Duration::from_secs(60),
        || unfinished(&w.valet).filter(|(_, done)| *done >= 1),
    );
    // Rewrite the whole file in place with other bytes of the same size.
    random_file(dir.path(), "changing.bin", size, 2);

    let run = parse_run(child.wait_with_output().unwrap());
    assert_eq!(
        run.code,
        Some(1),
        "the upload fails: {:?} {}",
        run.lines,
        run.stderr
    );
    let line = &run.lines[0];
    assert_eq!(line["verified"], false, "{line}");
    assert_eq!(line["error"]["code"], "source_changed", "{line}");
    assert!(
        line["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changing.bin"),
        "the message names the file: {line}"
    );

    let api = Api::new(&w.service.url, &w.token);
    let list: UploadList = api.get("/uploads").unwrap();
    assert!(
        list.uploads
            .iter()
            .all(|upload| upload.state != UploadState::Verified),
        "nothing completed: {list:?}"
    );
    assert!(
        w.service.store().list("users/cole/").is_empty(),
        "no object in the store"
    );
}
