use std::io::Write;

use valet_tests::files::sha256_file;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{PATIENCE, Watch, completed, ends_with, events};

#[test]
fn a_rename_sends_nothing_and_an_edit_sends_a_new_version() {
    let w = world("rey", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    let watch = Watch::start(&w.valet, dir.path(), &["--to", "inbox"]);

    let first = dir.path().join("a/report.txt");
    std::fs::write(&first, b"version 1\n").unwrap();
    let sent = watch.wait_sent("a/report.txt", PATIENCE);
    assert_eq!(
        sent["object"], "users/rey/inbox/a/report.txt",
        "sub-folders follow --to"
    );

    // Renamed and moved to another sub-folder: the same file, nothing to send.
    std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
    let moved = dir.path().join("b/c/renamed.txt");
    std::fs::rename(&first, &moved).unwrap();
    watch.wait_until("the move recognised", PATIENCE, |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "duplicate" && ends_with(l, "b/c/renamed.txt"))
    });
    let duplicate = watch
        .events("duplicate")
        .into_iter()
        .find(|l| ends_with(l, "renamed.txt"))
        .unwrap();
    assert_eq!(duplicate["object"], "users/rey/inbox/a/report.txt");
    assert_eq!(watch.events("sent").len(), 1, "the rename sent nothing");

    // Edited after its upload: sent again, as a new version, with the new bytes.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&moved)
        .unwrap();
    file.write_all(b"version 2\n").unwrap();
    drop(file);
    let edited = watch.wait_sent("b/c/renamed.txt", PATIENCE);
    let key = edited["object"].as_str().unwrap();
    assert_eq!(key, "users/rey/inbox/b/c/renamed.txt");
    assert_eq!(
        w.service.store().object_digest(key),
        Some((20, sha256_file(&moved))),
        "the new version is in the store"
    );

    let lines = watch.stop();
    assert_eq!(
        events(&lines, "sent").len(),
        2,
        "the first version and the edit"
    );
    assert_eq!(completed(&w.service).len(), 2);
}
