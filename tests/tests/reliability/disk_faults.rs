//! The client's own disk and the file it sends going wrong mid-upload: the journal's disk fills
//! up; the source file is deleted, truncated, or replaced by another file; the file cannot be
//! read. Each is a clear error and a non-zero exit; the journal stays readable; nothing is
//! completed on the service and no object appears in the store (a rewrite in place is
//! `e2e::source_changed`). A full journal disk leaves the upload resumable: with space again,
//! `valet resume` finishes the same upload.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use valet_protocol::{UploadList, UploadState};
use valet_tests::api::Api;
use valet_tests::cli::{JsonRun, parse_run};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;
use valet_tests::{PART_SIZE, wait_for};

use crate::helpers::{World, unfinished, world};

/// 16 parts sent one at a time at 8 MiB/s: about 10 s, time to break things in the middle.
const SIZE: u64 = 16 * PART_SIZE;
const BWLIMIT: &str = "8388608";

fn slow_put_args(file: &Path) -> Vec<String> {
    [
        "put",
        "--json",
        "--part-size",
        &PART_SIZE.to_string(),
        "--parallel",
        "1",
        "--bwlimit",
        BWLIMIT,
        file.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// Starts a slow `valet put` of a new 80 MiB file and waits until a part is journaled.
fn upload_under_way(w: &World, dir: &Path, name: &str) -> (PathBuf, Child) {
    let file = random_file(dir, name, SIZE, 77);
    let args = slow_put_args(&file);
    let (mut child, _stderr) = w
        .valet
        .spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for("a part journaled", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("valet ended ({status}) before the fault");
        }
        unfinished(&w.valet).filter(|(_, done)| *done >= 1)
    });
    (file, child)
}

/// The run failed with `code`, saying `words` and naming `name`; the journal reads and holds
/// the upload as failed with that code; the service completed nothing and the store holds no
/// object. Returns the message, as quoted in docs/RELIABILITY.md.
fn refused_cleanly(w: &World, run: &JsonRun, code: &str, words: &str, name: &str) -> String {
    assert_eq!(run.code, Some(1), "exit 1: {:?} {}", run.lines, run.stderr);
    assert!(!run.stderr.contains("panicked"), "no panic: {}", run.stderr);
    let line = &run.lines[0];
    assert_eq!(line["verified"], false, "{line}");
    assert_eq!(line["error"]["code"], code, "{line}");
    let message = line["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(name) && message.contains(words),
        "the message names the file and says {words:?}: {message}"
    );

    let status = w.valet.run(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "valet status reads the journal");
    let journaled = w.valet.status();
    if journaled.is_empty() {
        assert!(shown.is_empty(), "{shown}");
    } else {
        assert_eq!(journaled.len(), 1, "{journaled:?}");
        assert_eq!(journaled[0]["state"], "failed", "{journaled:?}");
        assert_eq!(journaled[0]["error_code"], code, "{journaled:?}");
        assert!(
            shown.contains(&format!("last error [{code}]")),
            "valet status tells why: {shown}"
        );
    }

    let audit = w.service.audit();
    assert!(
        !audit.iter().any(|e| e["event"] == "upload_completed"),
        "nothing completed: {audit:#?}"
    );
    let api = Api::new(&w.service.url, &w.token);
    let list: UploadList = api.get("/uploads").unwrap();
    assert!(
        list.uploads
            .iter()
            .all(|u| u.state != UploadState::Verified),
        "no upload verified: {list:?}"
    );
    assert!(
        w.service.store().list("users/").is_empty(),
        "no object in the store"
    );
    eprintln!("measured ({name}): exit 1, {code}: {message}");
    message
}

#[test]
fn a_source_deleted_mid_upload_is_not_completed() {
    let w = world("dora", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (file, child) = upload_under_way(&w, dir.path(), "deleted.bin");
    std::fs::remove_file(&file).unwrap();
    let run = parse_run(child.wait_with_output().unwrap());
    refused_cleanly(
        &w,
        &run,
        "source_changed",
        "cannot be read any more",
        "deleted.bin",
    );
}

#[test]
fn a_source_truncated_mid_upload_is_not_completed() {
    let w = world("trudy", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (file, child) = upload_under_way(&w, dir.path(), "truncated.bin");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(SIZE / 2)
        .unwrap();
    let run = parse_run(child.wait_with_output().unwrap());
    refused_cleanly(
        &w,
        &run,
        "source_changed",
        "the file changed during the upload",
        "truncated.bin",
    );
}

/// Another file renamed over the source (as editors and downloaders save), with the same size
/// and modification time: only its identity (inode) tells it apart. The upload keeps reading
/// the old file through its open handle, and must still not complete it under that name.
#[test]
fn a_source_replaced_mid_upload_is_not_completed() {
    let w = world("remy", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (file, child) = upload_under_way(&w, dir.path(), "replaced.bin");
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let other = random_file(dir.path(), "replaced.bin.new", SIZE, 78);
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    std::fs::rename(&other, &file).unwrap();
    let run = parse_run(child.wait_with_output().unwrap());
    refused_cleanly(
        &w,
        &run,
        "source_changed",
        "the file was replaced by another one",
        "replaced.bin",
    );
}

/// The file rewritten in place, in a part already sent and in one not yet read, and its
/// modification time set back (as `touch -r`, `rsync --inplace --times` or a file system with
/// one-second times can leave it): size, modification time and inode are all as before, yet
/// the object would mix old and new bytes, a file that never was. The inode's change time,
/// which no writer can set back, tells.
#[test]
fn a_source_rewritten_in_place_with_its_old_times_is_not_completed() {
    use std::io::{Seek, SeekFrom, Write};
    let w = world("ines", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (file, child) = upload_under_way(&w, dir.path(), "in-place.bin");
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    let other = vec![0x5a; PART_SIZE as usize];
    for part in [0, 13] {
        writer.seek(SeekFrom::Start(part * PART_SIZE)).unwrap();
        writer.write_all(&other).unwrap();
    }
    writer.set_modified(modified).unwrap();
    drop(writer);
    let run = parse_run(child.wait_with_output().unwrap());
    refused_cleanly(
        &w,
        &run,
        "source_changed",
        "written to while it was read",
        "in-place.bin",
    );
}

/// A file with more bytes than its size says: the kernel's files in /proc say 0. Sending what
/// its size promised would complete an empty object for a file that is not empty.
#[test]
fn a_file_longer_than_its_size_is_not_completed() {
    let w = world("proctor", ServiceOptions::default());
    let run = w.valet.put(&[Path::new("/proc/version")], &[]);
    refused_cleanly(
        &w,
        &run,
        "source_changed",
        "more than the 0 bytes",
        "/proc/version",
    );
}

/// Whether this process runs as root, to whom file modes are no obstacle.
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// A file of mode 000. Root reads any file through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH,
/// so as root `valet` runs under `setpriv` with both dropped from its bounding set (a process
/// of uid 0 gets the bounding set as its capabilities at exec): it is root without the right to
/// ignore file modes, as an unprivileged user is.
#[test]
fn an_unreadable_file_is_refused_before_the_service_hears_of_it() {
    use std::os::unix::fs::PermissionsExt;
    let w = world("ursula", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "secret.bin", 3 * PART_SIZE, 79);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let args = slow_put_args(&file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = if is_root() {
        w.valet.command_via(
            &[
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--",
            ],
            &args,
        )
    } else {
        w.valet.command(&args)
    };
    let run = parse_run(command.output().unwrap());
    refused_cleanly(
        &w,
        &run,
        "source_unreadable",
        "Permission denied",
        "secret.bin",
    );
    assert!(
        !w.service
            .audit()
            .iter()
            .any(|e| e["event"] == "upload_created"),
        "refused before an upload was created"
    );
}

/// Runs inside a private user and mount namespace (`unshare --user --map-root-user --mount`,
/// no privilege needed, and root works too): a tmpfs of `$SIZE` over the data dir, a slow put,
/// the disk filled once two parts are journaled, then (after the test has looked at the
/// service, `$OUT/go`) the space freed, `valet status` and `valet resume`. `"$@"` is
/// `valet --data-dir DIR`; outputs go to `$OUT`.
const FULL_DISK_SCRIPT: &str = r#"
set -u
mount -t tmpfs -o "size=$SIZE" tmpfs "$DATA" || exit 90
"$@" put --json --part-size "$PART" --parallel 1 --bwlimit "$BWLIMIT" "$FILE" \
  > "$OUT/put.json" 2> "$OUT/put.err" &
put=$!
tries=0
until "$@" status --json 2>/dev/null | grep -Eq '"parts_done":([2-9]|[1-9][0-9])'; do
  tries=$((tries + 1)); [ "$tries" -lt 1200 ] || exit 91; sleep 0.1
done
dd if=/dev/zero of="$DATA/filler" bs=4096 2> "$OUT/dd.err"
wait "$put"; echo $? > "$OUT/put.code"
cp "$DATA"/journal.sqlite* "$OUT/" 2>/dev/null
touch "$OUT/failed"
tries=0
until [ -e "$OUT/go" ]; do
  tries=$((tries + 1)); [ "$tries" -lt 1200 ] || exit 92; sleep 0.1
done
rm "$DATA/filler"
"$@" status > "$OUT/status.txt" 2>&1; echo $? > "$OUT/status.code"
"$@" resume --json > "$OUT/resume.json" 2> "$OUT/resume.err"; echo $? > "$OUT/resume.code"
"$@" status --json > "$OUT/status.json" 2>&1
"#;

#[test]
fn a_full_journal_disk_stops_the_upload_resumably() {
    let w = world("fiona", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "full-disk.bin", SIZE, 80);
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();

    let mut script = w
        .valet
        .command_via(
            &[
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                FULL_DISK_SCRIPT,
                "sh",
            ],
            &[],
        )
        .env("SIZE", "1m")
        .env("DATA", w.valet.data_dir())
        .env("OUT", out.path())
        .env("FILE", &file)
        .env("PART", PART_SIZE.to_string())
        .env("BWLIMIT", BWLIMIT)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(out.path().join("script.err")).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    wait_for("the put to fail", Duration::from_secs(180), || {
        if let Ok(Some(status)) = script.try_wait() {
            panic!(
                "the namespace script ended ({status}) early: {}{}",
                read("script.err"),
                read("put.err")
            );
        }
        out.path().join("failed").exists().then_some(())
    });

    let run = JsonRun {
        code: read("put.code").trim().parse().ok(),
        lines: read("put.json")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        stderr: read("put.err"),
    };
    assert!(
        read("dd.err").contains("No space left"),
        "the disk filled: {}",
        read("dd.err")
    );
    assert_eq!(run.code, Some(1), "exit 1: {:?} {}", run.lines, run.stderr);
    assert!(!run.stderr.contains("panicked"), "no panic: {}", run.stderr);
    let error = &run.lines[0]["error"];
    assert_eq!(error["code"], "journal", "{:?}", run.lines);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("journal.sqlite") && message.contains("disk is full"),
        "the message names the journal and the full disk: {message}"
    );
    eprintln!("measured (full journal disk): exit 1, journal: {message}");

    // Nothing completed, nothing aborted: the upload waits on the service for the resume.
    let audit = w.service.audit();
    let count = |event: &str| audit.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("upload_completed"), 0, "nothing completed");
    assert_eq!(
        count("upload_aborted"),
        0,
        "the upload was kept for a resume"
    );
    assert!(w.service.store().list("users/").is_empty(), "no object");
    std::fs::write(out.path().join("go"), b"").unwrap();
    let ended = script.wait().unwrap();
    assert!(
        ended.success(),
        "the script ran to its end: {}",
        read("script.err")
    );

    assert_eq!(read("status.code").trim(), "0", "{}", read("status.txt"));
    let status = read("status.txt");
    // The error itself could not be journaled (the disk was full): the entry is as the last
    // receipt left it.
    assert!(
        status.starts_with("uploading") && status.contains("full-disk.bin"),
        "valet status reads the journal after the failure: {status}"
    );
    let resume = JsonRun {
        code: read("resume.code").trim().parse().ok(),
        lines: read("resume.json")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        stderr: read("resume.err"),
    };
    let line = resume.verified();
    assert!(
        line["bytes_already_stored"].as_u64().unwrap() > 0,
        "the resume went on from the parts journaled before the disk filled: {line}"
    );
    assert_eq!(
        w.service
            .store()
            .object_digest(line["object"].as_str().unwrap()),
        Some((SIZE, sha256_file(&file))),
        "byte-identical"
    );
    let audit = w.service.audit();
    let count = |event: &str| audit.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("upload_created"), 1, "the same upload was finished");
    assert_eq!(count("upload_completed"), 1);
    assert!(read("status.json").contains("\"state\":\"verified\""));
    eprintln!(
        "measured (full journal disk): resume sent {} bytes, {} were already stored",
        line["bytes_sent"], line["bytes_already_stored"]
    );
}
