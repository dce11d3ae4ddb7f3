//! `valet put` of one 512 MiB file killed with SIGKILL at random moments, 20 times, then run
//! to the end: the object is byte-identical, alone under the prefix, and the audit log shows one
//! upload created and one completed. Takes 40 to 75 s (debug build, 2 cores).
//!
//! The moments come from a seeded generator; the seed is printed, and `VALET_CRASH_SEED=N`
//! replays a run. Most kills land a random time after the journal shows more parts done than at
//! the last kill (so the upload moves on between kills); about one in four lands a random time
//! after the start, while the run checks the store's parts and hashes what it holds.
//!
//! The narrowest window has a test of its own: `valet` killed after the service created the
//! upload but before the journal holds its id (the create's answer held back by a fault proxy).
//! The next run must go on with that upload, not make a second one. Takes a few seconds.

use std::process::Child;
use std::time::Duration;

use valet_protocol::{UploadList, UploadState, UploadStatus};
use valet_tests::api::Api;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::faults::{Fault, FaultProxy};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;
use valet_tests::{PART_SIZE, wait_for};

use crate::helpers::{unfinished, world};

const KILLS: usize = 20;
/// Above 500 MiB, and not a multiple of the part size: 103 parts of 5 MiB, the last short.
const SIZE: u64 = 512 * 1024 * 1024 + 12_345;
const PARALLEL: u64 = 4;
/// Part buffers of one run at `--parallel 4` (the engine's `plan`: parallel + 2 read ahead). A
/// kill orphans at most this many parts that had a key but no journaled receipt.
const BUFFERS: u64 = PARALLEL + 2;
/// Slow enough that 20 kills fit in the upload however fast the machine is.
const BWLIMIT: &str = "25165824"; // 24 MiB/s

/// A small seeded generator (xorshift64*): reproducible kill moments without a dependency.
struct Moments(u64);

impl Moments {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

fn seed() -> u64 {
    if let Some(seed) = std::env::var("VALET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_nanos() as u64 | 1
}

/// Bytes the process has handed to `write`-family system calls so far (`/proc/PID/io`'s
/// `wchar`): its requests to the store and the service, and its journal writes.
fn bytes_written(child: &Child) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", child.id())).unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn ended_early(child: &mut Child, kill: usize) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("valet ended ({status}) before kill {kill}; it should still be uploading");
    }
}

#[test]
fn a_500_mib_upload_survives_twenty_sigkills() {
    let w = world("crash", ServiceOptions::default());
    let api = Api::new(&w.service.url, &w.token);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "crash.bin", SIZE, 500);
    let part_size = PART_SIZE.to_string();
    let parallel = PARALLEL.to_string();
    let put = [
        "put",
        "--json",
        "--part-size",
        &part_size,
        "--parallel",
        &parallel,
        "--bwlimit",
        BWLIMIT,
        file.to_str().unwrap(),
    ];
    let seed = seed();
    eprintln!("crash loop seed {seed} (VALET_CRASH_SEED={seed} replays these moments)");
    let mut moments = Moments(seed | 1);

    let mut upload_id: Option<String> = None;
    let mut parts_at_last_kill = 0u64;
    let mut written_by_killed_runs = 0u64;
    for kill in 1..=KILLS {
        let (mut child, _stderr) = w.valet.spawn(&put);
        // The first kill waits for parts, so that the journal holds the upload id every later
        // kill is checked against (a kill before it has one: the test after this one).
        let early = kill > 1 && moments.below(4) == 0;
        let moment = if early {
            let after = Duration::from_millis(moments.below(1500));
            std::thread::sleep(after);
            ended_early(&mut child, kill);
            format!("{after:?} after the start")
        } else {
            let target = parts_at_last_kill + 1 + moments.below(2);
            wait_for(
                "more parts journaled as done",
                Duration::from_secs(300),
                || {
                    ended_early(&mut child, kill);
                    unfinished(&w.valet).filter(|(_, done)| *done >= target)
                },
            );
            // Up to about one part's time at the bandwidth limit.
            let after = Duration::from_millis(moments.below(250));
            std::thread::sleep(after);
            ended_early(&mut child, kill);
            format!("{after:?} after part {target} was journaled")
        };
        written_by_killed_runs += bytes_written(&child);
        child.kill().unwrap(); // SIGKILL: no cleanup, no last journal write.
        child.wait().unwrap();

        let (id, done) = unfinished(&w.valet).expect("the journal still holds the upload");
        if let Some(first) = &upload_id {
            assert_eq!(&id, first, "kill {kill}: the same upload was resumed");
        }
        upload_id = Some(id.clone());
        let status: UploadStatus = api.get(&format!("/uploads/{id}")).unwrap();
        eprintln!(
            "kill {kill:>2}: {moment}; journal {done} parts, store {} parts",
            status.parts.len()
        );
        parts_at_last_kill = done;
    }
    let upload_id = upload_id.unwrap();
    assert!(
        parts_at_last_kill < SIZE.div_ceil(PART_SIZE),
        "the kills landed mid-upload ({parts_at_last_kill} parts done)"
    );

    let run = parse_run(w.valet.command(&put).output().unwrap());
    let line = run.verified();
    assert_eq!(
        line["upload_id"],
        upload_id.as_str(),
        "the same upload ended"
    );
    let object = line["object"].as_str().unwrap();
    assert_eq!(
        w.service.store().object_digest(object),
        Some((SIZE, sha256_file(&file))),
        "the object reads back byte-identical"
    );
    assert_eq!(
        w.service.store().list("users/crash/"),
        vec![object.to_string()],
        "exactly one object under the prefix"
    );

    let audit = w.service.audit();
    let count = |event: &str| audit.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("upload_created"), 1, "one upload created");
    assert_eq!(count("upload_completed"), 1, "one upload completed");
    assert_eq!(count("upload_aborted"), 0, "nothing aborted");
    let mut keys_per_part = std::collections::BTreeMap::<u64, u64>::new();
    // Keys live 10 minutes here: every key beyond a part's first went to a run after a kill.
    // (The service marks such keys `renewal`, as it does any key for a part keyed before.)
    for event in audit.iter().filter(|e| e["event"] == "key_issued") {
        assert_eq!(event["upload_id"], upload_id.as_str(), "{event}");
        *keys_per_part
            .entry(event["part"].as_u64().unwrap())
            .or_default() += 1;
    }
    let parts = SIZE.div_ceil(PART_SIZE);
    assert_eq!(keys_per_part.len() as u64, parts, "every part keyed");
    let keyed_again = keys_per_part.values().filter(|&&n| n > 1).count() as u64;
    let extra_keys: u64 = keys_per_part.values().map(|n| n - 1).sum();
    assert!(
        extra_keys <= KILLS as u64 * BUFFERS,
        "a kill orphans at most the {BUFFERS} parts holding a buffer; {extra_keys} extra keys \
         after {KILLS} kills"
    );

    let final_sent = line["bytes_sent"].as_u64().unwrap();
    let total = written_by_killed_runs + final_sent;
    // At most the parts being sent (one per sender) are lost at each kill, plus the requests'
    // headers and journal pages (well under 1 MiB a run).
    let bound = SIZE + KILLS as u64 * (PARALLEL * PART_SIZE + (1 << 20));
    eprintln!(
        "measured: {KILLS} kills, {parts} parts; {keyed_again} parts keyed more than once \
         ({extra_keys} extra keys); bytes written {total} (killed runs {written_by_killed_runs}, \
         last run sent {final_sent}) for a file of {SIZE}: {:.2}x, {} MiB sent again",
        total as f64 / SIZE as f64,
        total.saturating_sub(SIZE) >> 20
    );
    assert!(
        total <= bound,
        "bytes written {total} exceed the file plus the parts in flight at each kill ({bound})"
    );

    let status = w.valet.status();
    assert_eq!(status.len(), 1, "one journal entry: {status:?}");
    assert_eq!(status[0]["state"], "verified", "{status:?}");
    assert_eq!(status[0]["parts_done"], parts, "{status:?}");
}

/// The create's answer is held back (the proxy in front of the service delays every answer by
/// [`ANSWER_DELAY`]) and `valet` is killed once the audit log shows the upload created, long
/// before the answer arrives: the journal has the upload without the service's id. The next
/// run, with the link back, resumes that same upload: one `upload_created`, one upload on the
/// service (verified, none left open), the object byte-identical.
/// How late every answer of the service reaches `valet` in the test below: time enough,
/// however loaded the machine, to see the upload in the audit log and kill `valet`.
const ANSWER_DELAY: Duration = Duration::from_secs(15);

#[test]
fn a_kill_between_create_and_journal_resumes_the_same_upload() {
    let w = world("window", ServiceOptions::default());
    // A delay, not a blackhole: `valet put` first checks its token (`GET /v1/me`), whose
    // answer must arrive; the create's answer then comes `ANSWER_DELAY` after the upload.
    let delay = ANSWER_DELAY.as_millis() as u64;
    let proxy = FaultProxy::start(&w.service.url, &[Fault::latency(delay, 0)]);
    let valet = Valet::with_token(&proxy.url(), &w.token);
    let dir = tempfile::tempdir().unwrap();
    let size = 3 * PART_SIZE + 777;
    let file = random_file(dir.path(), "window.bin", size, 501);
    let part_size = PART_SIZE.to_string();
    let put = [
        "put",
        "--json",
        "--part-size",
        &part_size,
        file.to_str().unwrap(),
    ];
    let created_ids = || -> Vec<String> {
        w.service
            .audit()
            .into_iter()
            .filter(|e| e["event"] == "upload_created")
            .map(|e| e["upload_id"].as_str().unwrap().to_string())
            .collect()
    };

    let (mut child, _stderr) = valet.spawn(&put);
    let created = wait_for(
        "the service to create the upload",
        Duration::from_secs(120),
        || {
            ended_early(&mut child, 1);
            created_ids().pop()
        },
    );
    child.kill().unwrap(); // SIGKILL, the answer still on its way.
    child.wait().unwrap();
    proxy.clear();
    let journal = valet.status();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["state"], "uploading", "{journal:?}");
    assert!(
        journal[0]["upload_id"].is_null(),
        "killed before the journal had the service's id: {journal:?}"
    );

    let run = parse_run(valet.command(&put).output().unwrap());
    let line = run.verified();
    assert_eq!(
        line["upload_id"],
        created.as_str(),
        "the upload made before the kill"
    );
    let object = line["object"].as_str().unwrap();
    assert_eq!(
        w.service.store().object_digest(object),
        Some((size, sha256_file(&file))),
        "the object reads back byte-identical"
    );
    assert_eq!(created_ids(), vec![created.clone()], "one upload_created");
    let uploads: UploadList = Api::new(&w.service.url, &w.token).get("/uploads").unwrap();
    let states: Vec<(&str, UploadState)> = uploads
        .uploads
        .iter()
        .map(|u| (u.upload_id.as_str(), u.state))
        .collect();
    assert_eq!(
        states,
        vec![(created.as_str(), UploadState::Verified)],
        "one upload on the service, verified; none left open"
    );
}
