use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{Watch, completed, events, list_all};

const FILES: usize = 10_000;
const PER_FOLDER: usize = 100;

/// Writes files `from..to` as `TOP/sub-J/file-I.txt`, 100 to a folder, each with its own bytes
/// (the index, then filler) so no two are the same content.
fn write_files(base: &Path, from: usize, to: usize) {
    for i in from..to {
        let folder = base
            .join(format!("top-{:02}", i / (PER_FOLDER * 4)))
            .join(format!("sub-{}", (i / PER_FOLDER) % 4));
        if i % PER_FOLDER == 0 || i == from {
            std::fs::create_dir_all(&folder).unwrap();
        }
        let filler = "x".repeat(i % 200);
        std::fs::write(
            folder.join(format!("file-{i:05}.txt")),
            format!("file {i}\n{filler}\n"),
        )
        .unwrap();
    }
}

#[test]
fn ten_thousand_files_dropped_at_once_are_each_sent_once() {
    let w = world("max", ServiceOptions::default());
    let base = tempfile::tempdir().unwrap();
    let watched = base.path().join("watched");
    let staging = base.path().join("staging");
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    // Half is prepared elsewhere and moved in as one folder (as a file manager drops a tree):
    // its files raise no events of their own.
    write_files(&staging, FILES / 2, FILES);

    let watch = Watch::start(&w.valet, &watched, &["--parallel", "16"]);
    let start = Instant::now();
    // The other half is written straight into the watched folder, as fast as it goes.
    write_files(&watched.join("direct"), 0, FILES / 2);
    std::fs::rename(&staging, watched.join("moved-in")).unwrap();

    watch.wait_until("10,000 files sent", Duration::from_secs(900), |lines| {
        events(lines, "sent").len() >= FILES
    });
    let elapsed = start.elapsed();
    let peak_kib = watch.peak_rss_kib();
    let lines = watch.stop();

    let sent = events(&lines, "sent");
    let paths: HashSet<_> = sent.iter().map(|l| l["path"].as_str().unwrap()).collect();
    let failed = events(&lines, "failed");
    eprintln!(
        "measured: {FILES} files sent in {:.1} s ({:.0} files/s), peak RSS of valet watch {:.1} MiB, \
         {} failed attempts retried, {} rescans",
        elapsed.as_secs_f64(),
        FILES as f64 / elapsed.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        failed.len(),
        events(&lines, "rescan").len(),
    );
    assert_eq!(sent.len(), FILES, "one sent line per file");
    assert_eq!(paths.len(), FILES, "no file sent twice");
    assert!(
        events(&lines, "duplicate").is_empty(),
        "every file has its own bytes"
    );

    let keys = list_all(&w.service, "users/max/");
    assert_eq!(keys.len(), FILES, "exactly 10,000 objects in the store");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("users/max/moved-in/top-"))
            .count(),
        FILES / 2,
        "the moved-in tree keeps its folders"
    );
    let completed = completed(&w.service);
    assert_eq!(
        completed.len(),
        FILES,
        "the service verified each file exactly once"
    );
}
