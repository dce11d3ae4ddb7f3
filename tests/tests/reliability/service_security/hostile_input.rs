//! What a hostile or broken client sends: names and folders that try to leave the account's
//! prefix or to deceive whoever reads them, a declared size that is not the size sent, content
//! types outside the allowed list or not types at all, and bodies and headers too large.

use serde_json::{Value, json};
use valet_tests::api::{RawAnswer, client_from, send};
use valet_tests::cli::Valet;
use valet_tests::files::sha256_b64;

use super::{ANN, Deployment};
use crate::helpers::part_digest;

const MIB: usize = 1024 * 1024;

fn code(answer: &RawAnswer) -> String {
    answer
        .error()
        .map(|e| e.code.as_str().to_owned())
        .unwrap_or_default()
}

/// `POST /v1/uploads` of 10 bytes named `file_name` in `prefix`.
fn create(d: &Deployment, token: &str, file_name: &str, prefix: Option<&str>) -> RawAnswer {
    d.call(
        token,
        "POST",
        "/v1/uploads",
        Some(json!({
            "file_name": file_name, "size": 10, "prefix": prefix,
            "content_type": "application/octet-stream", "part_size": valet_tests::PART_SIZE,
        })),
    )
}

/// What every object key must be, whatever was asked for.
fn assert_safe_key(key: &str, asked: &str) {
    assert!(
        key.starts_with("users/ann/"),
        "{asked:?} → {key:?} leaves ann's prefix"
    );
    assert!(
        key.len() <= 1024,
        "{asked:?} → {} bytes, over S3's key limit",
        key.len()
    );
    for segment in key.split('/') {
        assert!(
            !segment.is_empty() && segment != "." && segment != ".." && !segment.starts_with('.'),
            "{asked:?} → {key:?}: segment {segment:?}"
        );
        assert!(
            segment.len() <= 512,
            "{asked:?} → a segment of {} bytes",
            segment.len()
        );
    }
    assert!(
        !key.chars().any(|c| c.is_control()
            || c == '\\'
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')),
        "{asked:?} → {key:?} holds a control, bidi or invisible character"
    );
}

#[test]
fn hostile_names_and_folders_stay_under_the_callers_prefix() {
    let d = Deployment::start("");
    let (token, _) = d.api_token(ANN, "names");
    let long_name = format!("{}.txt", "n".repeat(5000));
    let deep = "deep/".repeat(200);
    // (file name, folder, the key expected, or the refusal's code)
    let cases: Vec<(&str, Option<&str>, Result<&str, &str>)> = vec![
        ("../../etc/passwd", None, Ok("users/ann/passwd")),
        ("/etc/passwd", None, Ok("users/ann/passwd")),
        (
            "..\\..\\windows\\system32\\evil.dll",
            None,
            Ok("users/ann/evil.dll"),
        ),
        (
            "C:\\Users\\bob\\secret.txt",
            None,
            Ok("users/ann/secret.txt"),
        ),
        ("a\0b.txt", None, Ok("users/ann/ab.txt")),
        ("line\r\nbreak.txt", None, Ok("users/ann/linebreak.txt")),
        ("\u{1b}[31mred.txt", None, Ok("users/ann/[31mred.txt")),
        (
            "invoice\u{202E}fdp.exe",
            None,
            Ok("users/ann/invoicefdp.exe"),
        ),
        (
            "zero\u{200B}width\u{FEFF}.txt",
            None,
            Ok("users/ann/zerowidth.txt"),
        ),
        ("a\u{FF0F}..\u{FF0F}b.txt", None, Ok("users/ann/a_.._b.txt")),
        ("a\u{2215}b.txt", None, Ok("users/ann/a_b.txt")),
        ("cafe\u{301}.txt", None, Ok("users/ann/caf\u{e9}.txt")),
        ("caf\u{e9}.txt", None, Ok("users/ann/caf\u{e9}.txt")),
        (".bashrc", None, Ok("users/ann/bashrc")),
        (".", None, Err("bad_request")),
        ("..", None, Err("bad_request")),
        ("...", None, Err("bad_request")),
        ("/", None, Err("bad_request")),
        ("", None, Err("bad_request")),
        ("\u{202E}\u{200B}", None, Err("bad_request")),
        ("../..", None, Err("bad_request")),
        (
            "report.pdf",
            Some("../../bob"),
            Ok("users/ann/bob/report.pdf"),
        ),
        (
            "report.pdf",
            Some("/abs/path/"),
            Ok("users/ann/abs/path/report.pdf"),
        ),
        (
            "report.pdf",
            Some("..\\..\\x"),
            Ok("users/ann/x/report.pdf"),
        ),
        (
            "report.pdf",
            Some("a/./b//c/.."),
            Ok("users/ann/a/b/c/report.pdf"),
        ),
        (
            "report.pdf",
            Some("\u{202E}evil/\0x"),
            Ok("users/ann/evil/x/report.pdf"),
        ),
        ("report.pdf", Some("./../."), Err("bad_request")),
        ("report.pdf", Some(&deep), Ok("")),
        (&long_name, None, Ok("")),
    ];
    for (name, prefix, expected) in cases {
        let asked = format!("{name:?} in {prefix:?}");
        let answer = create(&d, &token, name, prefix);
        match expected {
            Err(expected_code) => {
                assert_eq!(
                    (answer.status, code(&answer).as_str()),
                    (400, expected_code),
                    "{asked}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
                let message = answer.error().unwrap().message;
                assert!(
                    message.contains("usable"),
                    "{asked}: the refusal says why: {message}"
                );
            }
            Ok(expected_key) => {
                assert_eq!(answer.status, 200, "{asked}: {answer:?}");
                let created = answer.json();
                let key = created["object_key"].as_str().unwrap();
                assert_safe_key(key, &asked);
                if !expected_key.is_empty() {
                    assert_eq!(key, expected_key, "{asked}");
                }
                // Reported back the same way wherever the upload is shown.
                let id = created["upload_id"].as_str().unwrap();
                let status = d
                    .call(&token, "GET", &format!("/v1/uploads/{id}"), None)
                    .json();
                assert_eq!(status["object_key"], key, "{asked}: status reports the key");
            }
        }
    }
    let long = create(&d, &token, &long_name, None).json();
    let key = long["object_key"].as_str().unwrap();
    assert!(
        key.ends_with(".txt") && key.len() <= "users/ann/".len() + 255,
        "{key}"
    );

    // A real upload of a file whose name carries a Windows path and a bidi override: the
    // object lands at the sanitized key the CLI reports, and nowhere else.
    let dir = tempfile::tempdir().unwrap();
    let tricky = dir.path().join("..\\..\\inv\u{202E}fdp.exe");
    std::fs::write(&tricky, b"not really a program").unwrap();
    let run = Valet::with_token(d.url(), &token).put(&[tricky.as_path()], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let line = &run.lines[0];
    assert_eq!(line["object"], "users/ann/invfdp.exe", "{line}");
    let store = d.service.store();
    let (size, _) = store
        .object_digest("users/ann/invfdp.exe")
        .expect("the object is at the reported key");
    assert_eq!(size, 20);
    let everything = store.list("");
    assert!(
        everything.iter().all(|k| k.starts_with("users/ann/")),
        "nothing outside ann's prefix: {everything:?}"
    );
}

/// PUTs `bytes` with a key as issued (its URL and headers); the store's status and ETag.
fn put_with_key(key: &Value, bytes: Vec<u8>) -> (u16, String) {
    let mut request = reqwest::blocking::Client::new().put(key["url"].as_str().unwrap());
    for pair in key["headers"].as_array().unwrap() {
        request = request.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    let response = request.body(bytes).send().unwrap();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), etag)
}

fn receipt(number: u32, etag: &str, bytes: &[u8], size: usize) -> Value {
    json!({"number": number, "etag": etag, "sha256": sha256_b64(bytes), "size": size})
}

#[test]
fn a_declared_size_that_is_not_the_sent_size_is_never_completed() {
    let d = Deployment::start("");
    let (token, _) = d.api_token(ANN, "sizes");
    // Declared: 6 MiB, two parts of 5 MiB and 1 MiB.
    let part1: Vec<u8> = (0..5 * MIB).map(|i| (i % 251) as u8).collect();
    let part2: Vec<u8> = (0..MIB).map(|i| (i % 241) as u8).collect();
    let created = d
        .call(
            &token,
            "POST",
            "/v1/uploads",
            Some(json!({"file_name": "sized.bin", "size": 6 * MIB, "part_size": 5 * MIB})),
        )
        .json();
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let object_key = created["object_key"].as_str().unwrap().to_owned();
    assert_eq!(created["layout"]["part_count"], 2, "{created}");
    let keys_path = format!("/v1/uploads/{id}/keys");
    let complete_path = format!("/v1/uploads/{id}/complete");
    let keys =
        |parts: Vec<Value>| d.call(&token, "POST", &keys_path, Some(json!({ "parts": parts })));

    // The service refuses keys for parts the declared size does not have, or of other sizes.
    let bigger: Vec<u8> = [part2.as_slice(), part2.as_slice()].concat();
    for (what, digest, expected) in [
        (
            "part 2 of 2 MiB",
            part_digest(2, &bigger),
            "the layout says 1048576",
        ),
        ("a third part", part_digest(3, &part2), "outside 1..=2"),
        (
            "part 1 of 1 MiB",
            part_digest(1, &part2),
            "the layout says 5242880",
        ),
    ] {
        let refused = keys(vec![json!(digest)]);
        assert_eq!(
            (refused.status, code(&refused).as_str()),
            (400, "bad_request"),
            "{what}"
        );
        let message = refused.error().unwrap().message;
        assert!(message.contains(expected), "{what}: {message}");
    }

    // Part 1 as declared; part 2's key, then more bytes, and other bytes, than it was issued for.
    let issued = keys(vec![
        json!(part_digest(1, &part1)),
        json!(part_digest(2, &part2)),
    ])
    .json();
    let (status, etag1) = put_with_key(&issued["keys"][0], part1.clone());
    assert_eq!(status, 200, "part 1 as declared is stored");
    let key2 = &issued["keys"][1];
    let (more, _) = put_with_key(key2, bigger.clone());
    let (other, _) = put_with_key(key2, vec![7u8; MIB]);
    assert!(
        (400..500).contains(&more) && (400..500).contains(&other),
        "the store refuses bytes other than the key's: 2 MiB → {more}, other 1 MiB → {other}"
    );

    // Completion with what was sent is refused, each with a clear reason.
    let file_sha = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(&part1);
        h.update(&part2);
        valet_tests::files::hex(&h.finalize())
    };
    for (what, parts, expected) in [
        (
            "part 2 missing",
            vec![receipt(1, &etag1, &part1, 5 * MIB)],
            "part 2 missing",
        ),
        (
            "part 2 reported at 2 MiB",
            vec![
                receipt(1, &etag1, &part1, 5 * MIB),
                receipt(2, "\"x\"", &bigger, 2 * MIB),
            ],
            "part 2 has 2097152 bytes",
        ),
        (
            "part 2 reported but never stored",
            vec![
                receipt(1, &etag1, &part1, 5 * MIB),
                receipt(2, "\"x\"", &part2, MIB),
            ],
            "part 2 is not in the store",
        ),
    ] {
        let refused = d.call(
            &token,
            "POST",
            &complete_path,
            Some(json!({"sha256": file_sha, "parts": parts})),
        );
        assert_eq!(
            (refused.status, code(&refused).as_str()),
            (422, "parts_mismatch"),
            "{what}: {refused:?}"
        );
        let message = refused.error().unwrap().message;
        assert!(message.contains(expected), "{what}: {message}");
    }
    let status = d
        .call(&token, "GET", &format!("/v1/uploads/{id}"), None)
        .json();
    assert_eq!(
        status["state"], "open",
        "nothing reported complete: {status}"
    );
    assert!(
        d.service.store().object_digest(&object_key).is_none(),
        "no object at the key"
    );
    assert!(
        !d.service
            .audit()
            .iter()
            .any(|e| e["event"] == "upload_completed" && e["upload_id"] == id.as_str()),
        "no completion audited"
    );

    // The control: the declared bytes complete, so the refusals above were about size alone.
    let (status, etag2) = put_with_key(key2, part2.clone());
    assert_eq!(status, 200);
    let parts = vec![
        receipt(1, &etag1, &part1, 5 * MIB),
        receipt(2, &etag2, &part2, MIB),
    ];
    let done = d.call(
        &token,
        "POST",
        &complete_path,
        Some(json!({"sha256": file_sha, "parts": parts})),
    );
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.json()["size"], 6 * MIB);
}

#[test]
fn content_types_follow_the_allowed_list_and_malformed_ones_are_refused() {
    let d =
        Deployment::start("[limits]\nallowed_content_types = [\"image/*\", \"application/pdf\"]\n");
    let (token, _) = d.api_token(ANN, "types");
    let long = format!("image/{}", "x".repeat(300));
    let cases: [(Option<&str>, u16, &str); 14] = [
        (Some("image/png"), 200, ""),
        (Some("IMAGE/PNG"), 200, ""),
        (Some("application/pdf; charset=binary"), 200, ""),
        (Some("text/html"), 415, "content_type_not_allowed"),
        (Some("application/pdfx"), 415, "content_type_not_allowed"),
        (Some("*/*"), 415, "content_type_not_allowed"),
        (None, 415, "content_type_not_allowed"),
        (Some(""), 415, "content_type_not_allowed"),
        (Some("image"), 400, "bad_request"),
        (
            Some("image/png\r\nx-amz-acl: public-read"),
            400,
            "bad_request",
        ),
        (Some("image/png\0"), 400, "bad_request"),
        (Some("im\u{e1}ge/png"), 400, "bad_request"),
        (Some(&long), 400, "bad_request"),
        (Some("image/png\tx"), 400, "bad_request"),
    ];
    for (content_type, status, expected_code) in cases {
        let answer = d.call(
            &token,
            "POST",
            "/v1/uploads",
            Some(
                json!({"file_name": "f.bin", "size": 1, "content_type": content_type,
                "part_size": valet_tests::PART_SIZE}),
            ),
        );
        assert_eq!(
            (answer.status, code(&answer).as_str()),
            (status, expected_code),
            "{content_type:?}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    // Through the CLI: an HTML file is refused with its code; nothing reaches the store.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.html");
    std::fs::write(&page, b"<script>alert(1)</script>").unwrap();
    let run = Valet::with_token(d.url(), &token).put(&[page.as_path()], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.lines[0]["error"]["code"], "content_type_not_allowed",
        "{:?}",
        run.lines
    );
    assert!(
        d.service
            .store()
            .list("users/")
            .iter()
            .all(|k| !k.ends_with("page.html"))
    );
}

/// Sends a request that may be cut off; its status, or `None` when the connection was closed.
fn status_or_closed(request: reqwest::blocking::RequestBuilder) -> Option<u16> {
    request.send().ok().map(|r| r.status().as_u16())
}

#[test]
fn bodies_headers_and_batches_have_limits() {
    let d = Deployment::start("");
    let (token, _) = d.api_token(ANN, "limits");
    let bearer = format!("Bearer {token}");
    let raw = |method: &str, path: &str, body: Vec<u8>| {
        send(
            &client_from(None),
            d.url(),
            method,
            path,
            Some(&bearer),
            Some(body),
        )
    };
    // A JSON body over 1 MiB: 413 too_large, as JSON, wherever it is sent.
    let over = format!(r#"{{"file_name":"{}","size":1}}"#, "a".repeat(MIB)).into_bytes();
    for path in ["/v1/uploads", "/v1/auth/token", "/v1/auth/logout"] {
        let answer = raw("POST", path, over.clone());
        assert_eq!(
            (answer.status, code(&answer).as_str()),
            (413, "too_large"),
            "{path}: {answer:?}"
        );
    }
    // Just under it: taken, and the 900 KiB name cut to 255 bytes.
    let under = json!({"file_name": "b".repeat(900 * 1024), "size": 1, "part_size": valet_tests::PART_SIZE});
    let answer = raw("POST", "/v1/uploads", under.to_string().into_bytes());
    assert_eq!(answer.status, 200, "{answer:?}");
    let created = answer.json();
    assert_eq!(
        created["object_key"].as_str().unwrap().len(),
        "users/ann/".len() + 255
    );
    let id = created["upload_id"].as_str().unwrap();
    // Deep nesting is a parse error, not a crash.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let answer = raw("POST", "/v1/uploads", nested);
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (400, "bad_request"),
        "{answer:?}"
    );
    // At most 100 keys a request.
    let parts: Vec<Value> = (1..=101).map(|n| json!(part_digest(n, b"x"))).collect();
    let answer = raw(
        "POST",
        &format!("/v1/uploads/{id}/keys"),
        json!({"parts": parts}).to_string().into_bytes(),
    );
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (400, "bad_request"),
        "{answer:?}"
    );
    // Thousands of receipts: refused, and the message stays short.
    let receipts: Vec<Value> = (1..=5000).map(|n| receipt(n, "\"x\"", b"x", 1)).collect();
    let answer = raw(
        "POST",
        &format!("/v1/uploads/{id}/complete"),
        json!({"sha256": "00".repeat(32), "parts": receipts})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(
        (answer.status, code(&answer).as_str()),
        (422, "parts_mismatch"),
        "{answer:?}"
    );
    assert!(
        answer.body.len() < 4096,
        "{} bytes of message",
        answer.body.len()
    );
    // A 1 MiB header and 500 headers: 431 (or cut off while still sending), and the service
    // goes on.
    let http = client_from(None);
    let huge = status_or_closed(
        http.get(format!("{}/v1/me", d.url()))
            .header("authorization", &bearer)
            .header("x-filler", "h".repeat(MIB)),
    );
    let mut many = http
        .get(format!("{}/v1/me", d.url()))
        .header("authorization", &bearer);
    for i in 0..500 {
        many = many.header(format!("x-filler-{i}"), "v");
    }
    let many = status_or_closed(many);
    for (what, answer) in [("a 1 MiB header", huge), ("500 headers", many)] {
        assert!(
            answer.is_none_or(|status| status == 431),
            "{what}: {answer:?}"
        );
    }
    let me = d.call(&token, "GET", "/v1/me", None);
    assert_eq!(me.status, 200, "the service still answers");
}
