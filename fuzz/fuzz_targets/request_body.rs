//! What a client sends the service: JSON request bodies through the service's own extractor,
//! then the names in them (file name, `--to` folder, content type) as the service makes them
//! safe; and account names made from host names, emails and ID token claims.
//!
//! Input: byte 0 picks the request type (or, above 5, feeds the rest straight to the name
//! functions as text), the rest is the body.
#![no_main]

use axum::extract::FromRequest;
use libfuzzer_sys::fuzz_target;
use valet_protocol::{CompleteUpload, CreateUpload, LogoutRequest, PartKeysRequest, TokenRequest};
use valet_service::api::Body;
use valet_service::api::uploads::object_key;
use valet_service::fuzzing::check_content_type;
use valet_service::names::{
    MAX_NAME_BYTES, MAX_PREFIX_BYTES, is_valid_user_name, sanitize_file_name, sanitize_prefix,
};
use valet_service::sso::account_name;

fuzz_target!(|data: &[u8]| {
    let [which, body @ ..] = data else {
        return;
    };
    match which % 8 {
        0 => {
            if let Some(create) = extract::<CreateUpload>(body) {
                create_upload(&create);
            }
        }
        1 => drop(extract::<PartKeysRequest>(body)),
        2 => drop(extract::<CompleteUpload>(body)),
        3 => drop(extract::<TokenRequest>(body)),
        4 => drop(extract::<LogoutRequest>(body)),
        _ => {
            let text = String::from_utf8_lossy(body);
            file_name(&text);
            prefix(&text);
            content_type(&text);
            let account = account_name(&text);
            assert!(is_valid_user_name(&account), "account name {account:?}");
        }
    }
});

/// The body through the service's JSON extractor; a refusal is a 400 or 413 with a message.
fn extract<T>(body: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + Send + 'static,
{
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/uploads")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request");
    let extracted = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(Body::<T>::from_request(request, &()));
    match extracted {
        Ok(Body(value)) => {
            let again: T = serde_json::from_slice(&serde_json::to_vec(&value).expect("encodes"))
                .expect("decodes");
            assert!(again == value, "request does not survive a round trip");
            Some(value)
        }
        Err(failure) => {
            let code = failure.0.code.as_str();
            assert!(matches!(code, "bad_request" | "too_large"), "code {code}");
            assert!(!failure.0.message.is_empty());
            None
        }
    }
}

fn create_upload(create: &CreateUpload) {
    let name = file_name(&create.file_name);
    let folder = create.prefix.as_deref().and_then(prefix);
    if let Some(content_type) = &create.content_type {
        self::content_type(content_type);
    }
    if let Some(name) = name {
        let key = object_key("uploads/", "alice", folder.as_deref(), &name);
        let rest = key
            .strip_prefix("uploads/alice/")
            .expect("under the user's prefix");
        assert!(rest.split('/').all(safe_segment), "object key {key:?}");
        assert!(rest.ends_with(&name));
    }
}

/// A segment that cannot climb, hide, or display as something else.
fn safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && !segment.contains('\\')
        && !segment.chars().any(|c| c.is_control() || invisible(c))
}

fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}' | '\u{00AD}')
}

fn file_name(raw: &str) -> Option<String> {
    let name = sanitize_file_name(raw)?;
    assert!(
        safe_segment(&name) && !name.contains('/'),
        "file name {name:?} from {raw:?}"
    );
    assert!(
        name.len() <= MAX_NAME_BYTES,
        "file name of {} bytes",
        name.len()
    );
    assert!(
        !name.ends_with(['.', ' ']),
        "file name {name:?} ends in a dot or space"
    );
    assert_eq!(
        sanitize_file_name(&name).as_deref(),
        Some(name.as_str()),
        "not stable"
    );
    Some(name)
}

fn prefix(raw: &str) -> Option<String> {
    let prefix = sanitize_prefix(raw)?;
    assert!(
        prefix.split('/').all(safe_segment),
        "prefix {prefix:?} from {raw:?}"
    );
    assert!(
        prefix.len() <= MAX_PREFIX_BYTES,
        "prefix of {} bytes",
        prefix.len()
    );
    assert_eq!(
        sanitize_prefix(&prefix).as_deref(),
        Some(prefix.as_str()),
        "not stable"
    );
    Some(prefix)
}

fn content_type(raw: &str) {
    let all = vec!["*".to_owned()];
    if check_content_type(raw, &all).is_ok() {
        assert!(raw.len() <= 255 && raw.contains('/'));
        assert!(
            raw.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "content type {raw:?} could break a header"
        );
    }
    let images = vec!["image/*".to_owned()];
    if check_content_type(raw, &images).is_ok() {
        let essence = raw.split(';').next().unwrap_or_default().trim();
        assert!(
            essence.to_ascii_lowercase().starts_with("image/"),
            "{raw:?} let in as an image"
        );
    }
}
