use std::io::Write;
use std::time::Duration;

use valet_tests::files::sha256_file;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{PATIENCE, Watch, completed, ends_with};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 6;
// Twice the 1 s settle time: size and mtime alone would call the file complete between two
// writes (and each pause leaves the watch time to look); the writer keeps the file open, and
// the watch waits for it to be closed. 6 pauses: the file is written over 12 s.
const PAUSE: Duration = Duration::from_secs(2);

#[test]
fn a_file_written_slowly_is_sent_once_complete() {
    let w = world("sam", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&w.valet, dir.path(), &[]);

    let path = dir.path().join("slow.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..CHUNKS {
        let chunk: Vec<u8> = (0..CHUNK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        file.write_all(&chunk).unwrap();
        std::thread::sleep(PAUSE);
        let handed_out: Vec<_> = watch
            .lines()
            .into_iter()
            .filter(|l| {
                (l["event"] == "queued" || l["event"] == "sent") && ends_with(l, "slow.bin")
            })
            .collect();
        assert!(
            handed_out.is_empty(),
            "a file still being written was handed out: {handed_out:?}"
        );
    }
    drop(file); // the writer closes it: now it is complete
    let size = (CHUNK * CHUNKS) as u64;

    let sent = watch.wait_sent("slow.bin", PATIENCE);
    assert_eq!(sent["size"], size, "the complete file was sent");
    assert_eq!(sent["sha256"], sha256_file(&path).as_str());
    let key = sent["object"].as_str().unwrap().to_string();
    assert_eq!(
        w.service.store().object_digest(&key),
        Some((size, sha256_file(&path))),
        "the stored object is byte-identical to the finished file"
    );
    let waits: Vec<_> = watch
        .events("waiting")
        .into_iter()
        .filter(|l| ends_with(l, "slow.bin"))
        .collect();
    assert!(
        waits.iter().any(|l| l["reason"] == "open for writing"),
        "the watch said it waited for the writer: {waits:?}"
    );

    // A file dropped afterwards goes through the whole path; by then a second send of the
    // slow file would have happened too.
    std::fs::write(dir.path().join("after.txt"), b"after").unwrap();
    watch.wait_sent("after.txt", PATIENCE);
    let lines = watch.stop();
    let sends = lines
        .iter()
        .filter(|l| l["event"] == "sent" && ends_with(l, "slow.bin"))
        .count();
    assert_eq!(sends, 1, "sent exactly once");
    let created: Vec<_> = w
        .service
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "upload_created" && e["detail"]["object_key"] == key.as_str())
        .collect();
    assert_eq!(
        created.len(),
        1,
        "the service never saw an upload of a partial version: {created:?}"
    );
    assert_eq!(
        completed(&w.service).len(),
        2,
        "slow.bin and after.txt, once each"
    );
}
