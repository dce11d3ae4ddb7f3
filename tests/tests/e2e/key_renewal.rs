use valet_tests::PART_SIZE;
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::ServiceOptions;

use valet_tests::store::StoreKind;

use crate::helpers::{on_every_store, world_on};

on_every_store!(uploads_outlive_two_second_keys);

/// Azurite refuses an expired SAS (403), as S3 does; the GCS emulator does not check expiry,
/// so there the test shows the client's side only: it renews keys before they expire (the
/// audit log counts the renewals) whether or not the store would have refused them.
fn uploads_outlive_two_second_keys(kind: StoreKind) {
    let options = ServiceOptions {
        key_ttl: "2s".into(),
        ..ServiceOptions::default()
    };
    let w = world_on(kind, "kai", options);
    let dir = tempfile::tempdir().unwrap();
    let size = 6 * PART_SIZE + 777;
    let file = random_file(dir.path(), "slow.bin", size, 7);

    // 4 MiB/s, one part at a time: about 9 s in all, while each key lives 2 s, so keys of
    // parts read ahead expire before their turn and must be renewed.
    let run = w
        .valet
        .put(&[&file], &["--parallel", "1", "--bwlimit", "4194304"]);

    let line = run.verified();
    let object = line["object"].as_str().unwrap();
    assert_eq!(
        w.service.store().object_digest(object),
        Some((size, sha256_file(&file)))
    );
    let upload_id = line["upload_id"].as_str().unwrap();
    let keys: Vec<_> = w
        .service
        .audit()
        .into_iter()
        .filter(|event| event["event"] == "key_issued" && event["upload_id"] == upload_id)
        .collect();
    let renewals = keys
        .iter()
        .filter(|event| event["detail"]["renewal"] == true)
        .count();
    eprintln!(
        "measured ({kind:?}): {} keys issued for 7 parts, {renewals} of them renewals",
        keys.len()
    );
    assert!(
        keys.len() > 7,
        "7 parts need at least 7 keys; the audit log shows {}",
        keys.len()
    );
    assert!(renewals >= 1, "the audit log shows key renewals: {keys:#?}");
    for event in &keys {
        assert!(
            event["part"].as_u64().is_some_and(|p| (1..=7).contains(&p)),
            "{event}"
        );
        assert!(
            event["expires_at"].is_string(),
            "each issuance records its expiry: {event}"
        );
    }
}
