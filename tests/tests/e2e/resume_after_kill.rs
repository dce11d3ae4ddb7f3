use std::time::Duration;

use valet_protocol::UploadStatus;
use valet_tests::api::Api;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;
use valet_tests::{MIB_210, PART_SIZE, wait_for};

use valet_tests::store::StoreKind;

use crate::helpers::{on_every_store, unfinished, world_on};

const PARALLEL: u64 = 4;
// Slow enough that the kill lands mid-upload on any machine, fast enough to finish in seconds.
const BWLIMIT: &str = "25165824"; // 24 MiB/s

/// Starts `args`, waits until the journal shows at least `parts` parts done, then SIGKILLs it.
/// Returns the upload id and the bytes the store holds right after the kill.
fn kill_after(valet: &Valet, api: &Api, args: &[&str], parts: u64) -> (String, u64) {
    let (mut child, _stderr) = valet.spawn(args);
    let upload_id = wait_for("parts journaled as done", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("valet ended ({status}) before it could be killed mid-upload");
        }
        unfinished(valet)
            .filter(|(_, done)| *done >= parts)
            .map(|(id, _)| id)
    });
    child.kill().unwrap(); // SIGKILL on Unix: no cleanup, no last journal write.
    child.wait().unwrap();
    let status: UploadStatus = api.get(&format!("/uploads/{upload_id}")).unwrap();
    let held = status.parts.iter().map(|part| part.size).sum();
    (upload_id, held)
}

on_every_store!(killed_uploads_resume_without_resending_finished_parts);

fn killed_uploads_resume_without_resending_finished_parts(kind: StoreKind) {
    let w = world_on(kind, "kim", ServiceOptions::default());
    let api = Api::new(&w.service.url, &w.token);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "big.bin", MIB_210, 42);
    let path = file.to_str().unwrap();
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
        path,
    ];

    // First crash about a quarter in.
    let (upload_id, held) = kill_after(&w.valet, &api, &put, 10);
    assert!(
        held > 0 && held < MIB_210,
        "killed mid-upload: the store holds {held} bytes"
    );

    // `valet put` of the same file resumes the same upload; crash it again further on.
    let (again_id, held_later) = kill_after(&w.valet, &api, &put, 25);
    assert_eq!(
        again_id, upload_id,
        "valet put of the same file resumed instead of starting over"
    );
    assert!(
        held_later > held,
        "the second run added parts: {held} -> {held_later}"
    );

    // `valet resume` finishes it.
    let run = parse_run(
        w.valet
            .command(&["resume", "--json", "--parallel", &parallel])
            .output()
            .unwrap(),
    );
    let line = run.verified();
    assert_eq!(
        line["upload_id"],
        upload_id.as_str(),
        "resume finished the same upload"
    );
    let sent = line["bytes_sent"].as_u64().unwrap();
    let missing = MIB_210 - held_later;
    let sent_again = sent.saturating_sub(missing);
    eprintln!(
        "measured ({kind:?}): store held {held} then {held_later} of {MIB_210} bytes at the kills; \
         resume sent {sent}, of which {sent_again} again (bound {})",
        PARALLEL * PART_SIZE
    );
    assert!(
        sent_again <= PARALLEL * PART_SIZE,
        "resume re-sent {sent_again} bytes the store already held; at most the parts in flight \
         ({PARALLEL} x {PART_SIZE}) may be sent again (sent {sent}, missing {missing})"
    );
    assert!(
        sent >= missing,
        "resume sent every missing byte ({sent} < {missing})"
    );

    let object = line["object"].as_str().unwrap();
    let stored = w
        .service
        .store()
        .object_digest(object)
        .expect("object stored");
    assert_eq!(
        stored,
        (MIB_210, sha256_file(&file)),
        "the resumed object is byte-identical"
    );
    assert_eq!(
        w.service.store().list("users/kim/"),
        vec![object.to_string()],
        "exactly one object"
    );
    assert!(
        unfinished(&w.valet).is_none(),
        "nothing left unfinished in the journal"
    );
}
