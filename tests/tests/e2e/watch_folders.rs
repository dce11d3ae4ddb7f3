use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{PATIENCE, Watch, ends_with, events};

#[test]
fn a_watched_folder_that_vanishes_is_reported_and_picked_up_when_back() {
    let w = world("fay", ServiceOptions::default());
    let base = tempfile::tempdir().unwrap();
    let watched = base.path().join("inbox");
    let away = base.path().join("inbox-renamed");
    std::fs::create_dir(&watched).unwrap();
    let watch = Watch::start(&w.valet, &watched, &[]);
    std::fs::write(watched.join("first.txt"), b"first").unwrap();
    watch.wait_sent("first.txt", PATIENCE);

    std::fs::rename(&watched, &away).unwrap();
    watch.wait_until("the folder reported missing", PATIENCE, |lines| {
        lines.iter().any(|l| l["event"] == "folder_missing")
    });
    let missing = watch.events("folder_missing");
    assert!(
        missing[0]["root"].as_str().unwrap().ends_with("inbox")
            && missing[0]["reason"].as_str().unwrap().contains("gone"),
        "a clear error naming the folder: {missing:?}"
    );
    // Written while the folder is elsewhere: found by the scan when it is back.
    std::fs::write(away.join("while-away.txt"), b"while away").unwrap();

    std::fs::rename(&away, &watched).unwrap();
    let sent = watch.wait_sent("while-away.txt", PATIENCE);
    assert_eq!(sent["size"], 10);
    let lines = watch.stop();
    assert_eq!(events(&lines, "folder_back").len(), 1);
    let watching = events(&lines, "watching");
    assert_eq!(
        watching.len(),
        2,
        "scanned at start and when back: {watching:?}"
    );
    assert_eq!(watching[1]["already_sent"], 1, "first.txt is known");
    assert_eq!(
        events(&lines, "sent").len(),
        2,
        "first.txt was not sent again"
    );
}

#[test]
fn after_upload_files_move_to_a_sub_folder_only_once_verified() {
    let w = world("moe", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&w.valet, dir.path(), &["--after-upload", "move:done"]);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/report.txt"), b"report").unwrap();

    watch.wait_until("the file moved", PATIENCE, |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "moved" && ends_with(l, "sub/report.txt"))
    });
    let lines = watch.lines();
    let sent_at = lines
        .iter()
        .position(|l| l["event"] == "sent" && ends_with(l, "sub/report.txt"))
        .expect("sent");
    let moved_at = lines.iter().position(|l| l["event"] == "moved").unwrap();
    assert!(
        sent_at < moved_at,
        "moved only after its upload was verified"
    );
    assert_eq!(
        std::fs::read(dir.path().join("done/sub/report.txt")).unwrap(),
        b"report",
        "moved into done/, keeping its sub-folder"
    );
    assert!(!dir.path().join("sub/report.txt").exists());
    assert_eq!(
        w.service.store().list("users/moe/"),
        vec!["users/moe/sub/report.txt".to_string()]
    );

    // The after-upload folder is not watched: a file there is never sent.
    std::fs::write(dir.path().join("done/ignored.txt"), b"ignored").unwrap();
    std::fs::write(dir.path().join("marker.txt"), b"marker").unwrap();
    watch.wait_sent("marker.txt", PATIENCE);
    let lines = watch.stop();
    assert_eq!(
        events(&lines, "sent").len(),
        2,
        "report.txt and marker.txt only"
    );
}
