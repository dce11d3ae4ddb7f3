//! A store's answer to a refused part upload, as the engine reads it: the `<Error>` body's code
//! and message (S3, Azure and GCS all answer XML there) and what the engine makes of it.
//!
//! Input: bytes 0-1 the HTTP status (big-endian, folded into 400..=599), the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valet_engine::fuzzing::{PartVerdict, store_error};

fuzz_target!(|data: &[u8]| {
    let [hi, lo, body @ ..] = data else {
        return;
    };
    let status = 400 + u16::from_be_bytes([*hi, *lo]) % 200;
    let (code, message, verdict) = store_error(7, status, body);
    assert!(
        code.chars().count() <= 100,
        "code kept whole: {} chars",
        code.len()
    );
    assert!(
        message.chars().count() <= 300,
        "message kept whole: {} chars",
        message.len()
    );
    assert_eq!(code, code.trim_start(), "code not trimmed");
    let text = String::from_utf8_lossy(body);
    if !code.is_empty() {
        assert!(text.contains(&code), "code {code:?} is not in the body");
    }
    match verdict {
        PartVerdict::BadDigest => assert_eq!(status, 400),
        PartVerdict::Forbidden => assert_eq!(status, 403),
        PartVerdict::Expired => assert!(status == 400 || status == 403),
        // 429 and every 5xx are retried, whatever the body says.
        PartVerdict::Fatal(code) => {
            assert!(
                status != 429 && status < 500,
                "HTTP {status} is not retried"
            );
            assert_eq!(code, "store", "a refused part is a store error");
        }
        PartVerdict::Retryable => assert!(status == 429 || status >= 500 || status == 400),
    }
});
