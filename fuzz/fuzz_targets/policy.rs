//! Policy files as the engine loads them: JSON or TOML, parsed and checked whole
//! (`Policy::parse`), then used (server URL, storage hosts, folders, upload rules).
//!
//! Input: byte 0 picks the syntax (even: JSON, odd: TOML), the rest is the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use valet_engine::policy::{Format, Policy, UploadRules};

const ORIGIN: &str = "/etc/valet-upload/policy.fuzz";

fuzz_target!(|data: &[u8]| {
    let [format, file @ ..] = data else {
        return;
    };
    let format = if format % 2 == 0 {
        Format::Json
    } else {
        Format::Toml
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let policy = match Policy::parse(text, format, ORIGIN) {
        Ok(policy) => policy,
        Err(e) => {
            assert_eq!(e.origin, ORIGIN);
            assert!(
                e.to_string().starts_with(&format!("policy {ORIGIN}: ")),
                "{e}"
            );
            return;
        }
    };
    // The last good policy is kept as JSON and read back: it must come back the same.
    let saved = serde_json::to_string_pretty(&policy).expect("a policy encodes as JSON");
    let again = Policy::parse(&saved, Format::Json, ORIGIN).expect("a saved policy reads back");
    assert_eq!(again, policy, "JSON round trip");
    if let Ok(toml) = toml::to_string(&policy) {
        let again = Policy::parse(&toml, Format::Toml, ORIGIN).expect("TOML reads back");
        assert_eq!(again, policy, "TOML round trip");
    }
    assert_eq!(
        policy.server.is_some(),
        policy.server_url().is_some(),
        "checked server unusable"
    );
    if let Some(url) = policy.server_url() {
        assert!(url.query().is_none() && url.path().ends_with('/'));
    }
    if let Some(hosts) = policy.storage_hosts() {
        for probe in ["https://s3.example.com/b/k", "http://127.0.0.1:9000/b/k"] {
            let _ = hosts.allows(&url::Url::parse(probe).expect("a URL"));
        }
    }
    for folder in &policy.watched_folders {
        let _ = (
            folder.resolved_path(),
            folder.settle(),
            folder.after_upload(),
        );
    }
    let rules = UploadRules::from_policy(Some(&policy));
    let _ = rules.check_size(Path::new("/tmp/f"), u64::MAX);
    let _ = rules.check_store("https://s3.example.com");
});
