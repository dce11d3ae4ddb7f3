//! What several tests set up the same way.

use valet_protocol::PartDigest;
use valet_tests::cli::Valet;
use valet_tests::files::sha256_b64;
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

/// Runs the test function `$test(StoreKind)` once per kind of store, as the tests
/// `$test::s3`, `$test::azure` and `$test::gcs`.
macro_rules! on_every_store {
    ($test:ident) => {
        mod $test {
            use valet_tests::store::StoreKind;

            #[test]
            fn s3() {
                super::$test(StoreKind::S3)
            }

            #[test]
            fn azure() {
                super::$test(StoreKind::Azure)
            }

            #[test]
            fn gcs() {
                super::$test(StoreKind::Gcs)
            }
        }
    };
}
pub(crate) use on_every_store;

/// A store, a service on a fresh bucket of it, and a user `name` signed in with an API token.
pub struct World {
    pub service: Service,
    pub valet: Valet,
    pub token: String,
    // Dropped last: the service talks to it until then.
    pub _store: TestStore,
}

/// A world on the S3 store.
pub fn world(name: &str, options: ServiceOptions) -> World {
    world_on(StoreKind::S3, name, options)
}

/// A world on a store of `kind`.
pub fn world_on(kind: StoreKind, name: &str, options: ServiceOptions) -> World {
    let store = TestStore::shared_or_start(kind);
    let service = Service::start(&store, options);
    let token = service.add_user_with_token(name);
    let valet = Valet::with_token(&service.url, &token);
    World {
        service,
        valet,
        token,
        _store: store,
    }
}

/// What a key request says of part `number` holding `bytes`: its SHA-256, and its MD5, which
/// the Azure and GCS stores check (S3 ignores it).
pub fn part_digest(number: u32, bytes: &[u8]) -> PartDigest {
    PartDigest {
        number,
        size: bytes.len() as u64,
        sha256: sha256_b64(bytes),
        md5: Some(md5_b64(bytes)),
        crc64: None,
    }
}

/// Standard base64 of the MD5 of `bytes`.
pub fn md5_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}

/// The upload id of the single unfinished upload in `valet status`, and its parts done.
pub fn unfinished(valet: &Valet) -> Option<(String, u64)> {
    valet
        .status()
        .into_iter()
        .find(|line| line["state"] == "uploading" && line["upload_id"].is_string())
        .map(|line| {
            (
                line["upload_id"].as_str().unwrap().to_string(),
                line["parts_done"].as_u64().unwrap_or(0),
            )
        })
}
