use valet_tests::cli::Valet;
use valet_tests::files::{random_file, sha256_file};
use valet_tests::rclone_s3::RcloneS3;
use valet_tests::service::{Service, ServiceOptions};

const SIZE: u64 = 20 * 1024 * 1024;

/// A fresh `rclone serve s3`, a service on it that reads objects back (the store checks no part
/// checksum) and tags them or not, and `alice` signed in with an API token.
fn on_rclone(tag_objects: bool) -> (RcloneS3, Service, Valet) {
    let store = RcloneS3::start();
    let service = Service::start(
        &store,
        ServiceOptions {
            verify: "read-back".into(),
            tag_objects,
            ..ServiceOptions::default()
        },
    );
    let valet = Valet::with_token(&service.url, &service.add_user_with_token("alice"));
    (store, service, valet)
}

/// rclone's `serve s3` answers `PUT ?tagging` by storing the tag document as the object. The
/// service tags before it verifies, so the upload is refused, never reported complete over a
/// 143-byte object (it was reported verified when the tag went on after the check).
#[test]
fn a_store_that_stores_the_tag_document_as_the_object_fails_verification() {
    let (_store, service, valet) = on_rclone(true);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "tagged.bin", SIZE, 1);

    let run = valet.put(&[file.as_path()], &[]);

    assert_ne!(run.code, Some(0), "{:?}\n{}", run.lines, run.stderr);
    assert!(
        run.lines.iter().all(|line| line["verified"] != true),
        "nothing verified: {:?}",
        run.lines
    );
    let said = format!("{:?} {}", run.lines, run.stderr);
    assert!(said.contains("not accepted"), "{said}");
    let audit = service.audit();
    let count = |event: &str| audit.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("upload_completed"), 0, "{audit:?}");
    assert_eq!(count("upload_verification_failed"), 1, "{audit:?}");
}

/// With `tag_objects = false` (as docs/CONTRACTS.md says for stores without tagging) the same
/// store takes uploads: read back, verified, byte-identical.
#[test]
fn without_tags_a_store_that_checks_no_checksum_is_verified_by_reading_back() {
    let (_store, service, valet) = on_rclone(false);
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "plain.bin", SIZE, 2);

    let run = valet.put(&[file.as_path()], &[]);

    assert_eq!(run.code, Some(0), "{:?}\n{}", run.lines, run.stderr);
    assert_eq!(run.lines[0]["verified"], true, "{:?}", run.lines);
    let key = run.lines[0]["object"].as_str().unwrap().to_owned();
    assert_eq!(
        service.store().object_digest(&key),
        Some((SIZE, sha256_file(&file))),
        "the object is the file"
    );
}
