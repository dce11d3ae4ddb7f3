use valet_protocol::{
    CompleteUpload, CreateUpload, ErrorCode, PartKeys, PartKeysRequest, PartReceipt, UploadCreated,
    UploadList, UploadStatus,
};
use valet_tests::PART_SIZE;
use valet_tests::api::Api;
use valet_tests::service::ServiceOptions;

use valet_tests::store::StoreKind;

use crate::helpers::{on_every_store, part_digest, world_on};

on_every_store!(one_user_cannot_touch_another_users_upload);

fn one_user_cannot_touch_another_users_upload(kind: StoreKind) {
    let w = world_on(kind, "ann", ServiceOptions::default());
    let bob_token = w.service.add_user_with_token("bob");
    let ann = Api::new(&w.service.url, &w.token);
    let bob = Api::new(&w.service.url, &bob_token);

    let create = CreateUpload {
        file_name: "private.bin".into(),
        size: 10,
        content_type: Some("application/octet-stream".into()),
        prefix: None,
        part_size: PART_SIZE,
        idempotency_key: None,
    };
    let upload: UploadCreated = ann.post("/uploads", &create).unwrap();
    let id = &upload.upload_id;
    let digest = part_digest(1, &[0u8; 10]);
    let keys = PartKeysRequest {
        parts: vec![digest.clone()],
    };
    let complete = CompleteUpload {
        sha256: "00".repeat(32),
        parts: vec![PartReceipt {
            number: 1,
            etag: "\"x\"".into(),
            sha256: digest.sha256.clone(),
            size: 10,
        }],
    };

    let not_found = |result: Result<(), valet_protocol::ApiError>, what: &str| {
        let error = result.expect_err(what);
        assert_eq!(error.code, ErrorCode::NotFound, "{what}: {error:?}");
    };
    not_found(
        bob.get::<UploadStatus>(&format!("/uploads/{id}")).map(drop),
        "bob reads ann's upload",
    );
    not_found(
        bob.post::<_, PartKeys>(&format!("/uploads/{id}/keys"), &keys)
            .map(drop),
        "bob gets keys",
    );
    not_found(
        bob.post::<_, serde_json::Value>(&format!("/uploads/{id}/complete"), &complete)
            .map(drop),
        "bob completes",
    );
    not_found(bob.delete(&format!("/uploads/{id}")), "bob aborts");
    let unknown = bob
        .get::<UploadStatus>("/uploads/no-such-upload")
        .unwrap_err();
    assert_eq!(
        unknown.code,
        ErrorCode::NotFound,
        "others' ids look exactly like unknown ones"
    );

    let bobs: UploadList = bob.get("/uploads").unwrap();
    assert!(
        bobs.uploads.iter().all(|u| &u.upload_id != id),
        "bob's list does not show ann's upload"
    );

    // Ann's upload is untouched by all of that.
    let status: UploadStatus = ann.get(&format!("/uploads/{id}")).unwrap();
    assert_eq!(status.state, valet_protocol::UploadState::Open);
    let ann_keys: PartKeys = ann.post(&format!("/uploads/{id}/keys"), &keys).unwrap();
    assert_eq!(ann_keys.keys.len(), 1);
    ann.delete(&format!("/uploads/{id}")).unwrap();
}
