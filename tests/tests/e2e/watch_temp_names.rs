use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{PATIENCE, Watch, events, list_all};

#[test]
fn temporary_names_are_never_sent_and_the_final_name_is() {
    let w = world("tia", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&w.valet, dir.path(), &[]);

    let download = random_file(dir.path(), "setup.bin.crdownload", 300_000, 5);
    for name in [
        "movie.mkv.part",
        "data.tmp",
        "~$budget.xlsx",
        ".~lock.budget.ods#",
        ".notes.txt.swp",
        "notes.txt~",
        ".hidden",
    ] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    std::fs::create_dir(dir.path().join(".cache")).unwrap();
    std::fs::write(dir.path().join(".cache/inside.txt"), b"hidden folder").unwrap();
    // Written after the others, so once it is sent they would have been too.
    std::fs::write(dir.path().join("marker.txt"), b"marker").unwrap();
    watch.wait_sent("marker.txt", PATIENCE);
    let sent = watch.events("sent");
    assert_eq!(sent.len(), 1, "only the final name was sent: {sent:?}");

    // The browser renames the finished download to its real name.
    let final_path = dir.path().join("setup.bin");
    std::fs::rename(&download, &final_path).unwrap();
    let line = watch.wait_sent("setup.bin", PATIENCE);
    let key = line["object"].as_str().unwrap().to_string();
    assert_eq!(
        w.service.store().object_digest(&key),
        Some((300_000, sha256_file(&final_path)))
    );

    let lines = watch.stop();
    let mut keys = list_all(&w.service, "users/tia/");
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "users/tia/marker.txt".to_string(),
            "users/tia/setup.bin".into()
        ],
        "no temporary, lock, swap or hidden file reached the store"
    );
    assert_eq!(events(&lines, "sent").len(), 2);
}
