use std::time::Duration;

use super::source::registry::{RegValue, to_json};
use super::*;
use crate::size::ByteSize;

const FULL_JSON: &str = r#"{
  "$schema": "file:///usr/share/valet-upload/policy.schema.json",
  "server": "https://valet.example.com",
  "sign_in": {
    "mode": "enrollment",
    "enrollment_secret": "org-secret-123",
    "allow_sign_in_screen": false
  },
  "watched_folders": [
    {
      "path": "/srv/scans",
      "to": "scans/floor-2",
      "settle_seconds": 10,
      "after_upload": "move:sent",
      "include": ["*.pdf", "*.tif"],
      "exclude": ["draft-*"],
      "hidden": true
    },
    { "path": "~/Outbox" }
  ],
  "limits": { "bandwidth": "20 MiB", "parallel_parts": 8, "max_file_size": 53687091200 },
  "allowed_storage_hosts": ["*.blob.core.windows.net", "storage.example.com:9000"],
  "proxy": "http://proxy.example.com:3128",
  "autostart": true,
  "notifications": false,
  "locked": ["server", "bandwidth", "parallel_parts", "watched_folders", "autostart", "notifications", "sign_out"]
}"#;

const FULL_TOML: &str = r#"
server = "https://valet.example.com"
allowed_storage_hosts = ["*.blob.core.windows.net", "storage.example.com:9000"]
proxy = "http://proxy.example.com:3128"
autostart = true
notifications = false
locked = ["server", "bandwidth", "parallel_parts", "watched_folders", "autostart", "notifications", "sign_out"]

[sign_in]
mode = "enrollment"
enrollment_secret = "org-secret-123"
allow_sign_in_screen = false

[[watched_folders]]
path = "/srv/scans"
to = "scans/floor-2"
settle_seconds = 10
after_upload = "move:sent"
include = ["*.pdf", "*.tif"]
exclude = ["draft-*"]
hidden = true

[[watched_folders]]
path = "~/Outbox"

[limits]
bandwidth = "20 MiB"
parallel_parts = 8
max_file_size = 53687091200
"#;

fn parse_json(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Format::Json, "/etc/valet-upload/policy.json")
}

#[test]
fn every_field_is_read_from_json() {
    let p = parse_json(FULL_JSON).unwrap();
    assert_eq!(
        p.server_url().unwrap().as_str(),
        "https://valet.example.com/"
    );
    assert_eq!(p.sign_in.mode, SignInMode::Enrollment);
    assert_eq!(
        p.sign_in.enrollment_secret.as_deref(),
        Some("org-secret-123")
    );
    assert!(!p.sign_in.allow_sign_in_screen);
    assert_eq!(p.watched_folders.len(), 2);
    let scans = &p.watched_folders[0];
    assert_eq!(scans.resolved_path(), std::path::Path::new("/srv/scans"));
    assert_eq!(scans.to.as_deref(), Some("scans/floor-2"));
    assert_eq!(scans.settle(), Duration::from_secs(10));
    assert_eq!(
        scans.after_upload(),
        crate::watch::AfterUpload::MoveTo("sent".into())
    );
    assert_eq!(scans.include, ["*.pdf", "*.tif"]);
    assert_eq!(scans.exclude, ["draft-*"]);
    assert!(scans.hidden);
    let outbox = &p.watched_folders[1];
    assert!(
        outbox.resolved_path().is_absolute(),
        "~/ is the home folder"
    );
    assert!(outbox.resolved_path().ends_with("Outbox"));
    assert_eq!(outbox.settle(), crate::watch::DEFAULT_SETTLE);
    assert_eq!(outbox.after_upload(), crate::watch::AfterUpload::Leave);
    assert_eq!(p.limits.bandwidth, Some(ByteSize(20 << 20)));
    assert_eq!(p.limits.parallel_parts, Some(8));
    assert_eq!(p.limits.max_file_size, Some(ByteSize(50 << 30)));
    let hosts = p.storage_hosts().unwrap();
    assert!(hosts.allows(&"https://acct.blob.core.windows.net/c/b".parse().unwrap()));
    assert!(hosts.allows(&"https://storage.example.com:9000/b".parse().unwrap()));
    assert!(!hosts.allows(&"https://storage.example.com/b".parse().unwrap()));
    assert_eq!(p.proxy.as_deref(), Some("http://proxy.example.com:3128"));
    assert_eq!(p.autostart, Some(true));
    assert_eq!(p.notifications, Some(false));
    for setting in [
        Setting::Server,
        Setting::Bandwidth,
        Setting::ParallelParts,
        Setting::WatchedFolders,
        Setting::Autostart,
        Setting::Notifications,
        Setting::SignOut,
    ] {
        assert!(p.is_locked(setting), "{setting} is locked");
    }
}

#[test]
fn toml_and_json_say_the_same() {
    let json = parse_json(FULL_JSON).unwrap();
    let toml = Policy::parse(FULL_TOML, Format::Toml, "policy.toml").unwrap();
    assert_eq!(
        Policy {
            schema: None,
            ..json
        },
        toml
    );
}

#[test]
fn an_empty_policy_sets_nothing() {
    let p = parse_json("{}").unwrap();
    assert_eq!(p, Policy::default());
    assert_eq!(p.sign_in.mode, SignInMode::Password);
    assert!(p.sign_in.allow_sign_in_screen);
    assert!(
        p.storage_hosts().is_none(),
        "no list: any host the service names"
    );
    assert!(!p.is_locked(Setting::Server));
}

/// Each broken policy is refused with the file and the field named, and a message that says
/// what is wrong.
#[test]
fn bad_policies_name_the_file_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        // syntax
        (r#"{ "server": "https://a.example" "#, "", "EOF"),
        (r#"{ "server": "https://a.example",, }"#, "", "line 1"),
        // wrong types
        (
            r#"{ "limits": { "parallel_parts": "four" } }"#,
            "limits.parallel_parts",
            "invalid type",
        ),
        (r#"{ "autostart": "yes" }"#, "autostart", "invalid type"),
        (
            r#"{ "watched_folders": { "path": "/x" } }"#,
            "watched_folders",
            "invalid type",
        ),
        (
            r#"{ "limits": { "bandwidth": true } }"#,
            "limits.bandwidth",
            "number of bytes",
        ),
        (
            r#"{ "limits": { "max_file_size": "5 parsecs" } }"#,
            "limits.max_file_size",
            "unknown unit",
        ),
        (
            r#"{ "sign_in": { "mode": "magic" } }"#,
            "sign_in.mode",
            "unknown variant `magic`",
        ),
        (
            r#"{ "locked": ["everything"] }"#,
            "locked[0]",
            "unknown variant `everything`",
        ),
        // unknown keys
        (
            r#"{ "sever": "https://a.example" }"#,
            "sever",
            "unknown field `sever`",
        ),
        (
            r#"{ "limits": { "bandwith": 5 } }"#,
            "limits.bandwith",
            "unknown field `bandwith`",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "too": "y" }] }"#,
            "watched_folders[0].too",
            "unknown field `too`",
        ),
        // values
        (
            r#"{ "server": "http://valet.example.com" }"#,
            "server",
            "http://",
        ),
        (r#"{ "server": "not a url" }"#, "server", "relative URL"),
        (
            r#"{ "limits": { "parallel_parts": 0 } }"#,
            "limits.parallel_parts",
            "1 to 64",
        ),
        (
            r#"{ "limits": { "parallel_parts": 65 } }"#,
            "limits.parallel_parts",
            "1 to 64",
        ),
        (
            r#"{ "limits": { "bandwidth": 10 } }"#,
            "limits.bandwidth",
            "no limit",
        ),
        (
            r#"{ "limits": { "max_file_size": 0 } }"#,
            "limits.max_file_size",
            "more than 0",
        ),
        (
            r#"{ "watched_folders": [{ "path": "relative/dir" }] }"#,
            "watched_folders[0].path",
            "absolute",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "to": "../up" }] }"#,
            "watched_folders[0].to",
            "..",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "settle_seconds": 0 }] }"#,
            "watched_folders[0].settle_seconds",
            "1 to 3600",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "after_upload": "shred" }] }"#,
            "watched_folders[0].after_upload",
            "leave, delete or move",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "include": ["a[" ] }] }"#,
            "watched_folders[0].include",
            "a[",
        ),
        (
            r#"{ "watched_folders": [{ "path": "/x", "exclude": ["{b" ] }] }"#,
            "watched_folders[0].exclude",
            "{b",
        ),
        (
            r#"{ "allowed_storage_hosts": ["https://s3.example.com"] }"#,
            "allowed_storage_hosts[0]",
            "not a URL",
        ),
        (
            r#"{ "proxy": "ftp://proxy.example.com" }"#,
            "proxy",
            "ftp: use http",
        ),
        (r#"{ "locked": ["server"] }"#, "locked", "no `server`"),
        (
            r#"{ "sign_in": { "allow_sign_in_screen": false } }"#,
            "sign_in.allow_sign_in_screen",
            "nobody could sign in",
        ),
        (
            r#"{ "server": "https://v.example", "sign_in": { "mode": "enrollment" } }"#,
            "sign_in.enrollment_secret",
            "enrollment secret",
        ),
        (
            r#"{ "sign_in": { "mode": "enrollment", "enrollment_secret": "s" } }"#,
            "server",
            "service URL",
        ),
        (
            r#"{ "server": "https://v.example", "sign_in": { "mode": "sso" } }"#,
            "sign_in.sso",
            "issuer",
        ),
        (
            r#"{ "server": "https://v.example", "sign_in": { "mode": "sso", "sso": { "issuer": "http://idp.example", "client_id": "app" } } }"#,
            "sign_in.sso.issuer",
            "http://",
        ),
        (
            r#"{ "server": "https://v.example", "sign_in": { "mode": "sso", "sso": { "issuer": "https://idp.example", "client_id": " " } } }"#,
            "sign_in.sso.client_id",
            "empty",
        ),
    ];
    for (text, field, words) in cases {
        let e = parse_json(text).expect_err(text);
        assert_eq!(e.origin, "/etc/valet-upload/policy.json", "{text}");
        assert_eq!(&e.field, field, "{text}: {e}");
        let shown = e.to_string();
        assert!(
            shown.contains(words),
            "{text}: {shown:?} should say {words:?}"
        );
        assert!(
            shown.starts_with("policy /etc/valet-upload/policy.json: "),
            "{shown}"
        );
        if !field.is_empty() {
            assert!(shown.contains(&format!("field `{field}`")), "{shown}");
        }
    }
}

#[test]
fn bad_toml_names_the_field_too() {
    let e = Policy::parse(
        "[limits]\nparallel_parts = \"four\"\n",
        Format::Toml,
        "p.toml",
    )
    .unwrap_err();
    assert_eq!(e.field, "limits.parallel_parts", "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
    let e = Policy::parse("server = \n", Format::Toml, "p.toml").unwrap_err();
    assert_eq!(e.field, "");
    assert!(e.message.contains("line 1"), "{e}");
    let e = Policy::parse("[limits]\nbandwith = 5\n", Format::Toml, "p.toml").unwrap_err();
    assert_eq!(e.field, "limits.bandwith", "{e}");
}

#[test]
fn loopback_services_may_use_http() {
    let p = parse_json(r#"{ "server": "http://127.0.0.1:8080" }"#).unwrap();
    assert_eq!(p.server_url().unwrap().as_str(), "http://127.0.0.1:8080/");
}

#[test]
fn registry_values_become_the_same_policy() {
    let values = vec![
        ("Server".to_owned(), RegValue::Text("https://valet.example.com".into())),
        ("SignInMode".to_owned(), RegValue::Text("enrollment".into())),
        ("EnrollmentSecret".to_owned(), RegValue::Text("org-secret-123".into())),
        ("AllowSignInScreen".to_owned(), RegValue::Number(0)),
        ("BandwidthLimit".to_owned(), RegValue::Text("20 MiB".into())),
        ("ParallelParts".to_owned(), RegValue::Number(8)),
        ("MaxFileSize".to_owned(), RegValue::Text("50 GiB".into())),
        (
            "AllowedStorageHosts".to_owned(),
            RegValue::Texts(vec!["*.blob.core.windows.net".into(), "storage.example.com:9000".into()]),
        ),
        ("Proxy".to_owned(), RegValue::Text("http://proxy.example.com:3128".into())),
        ("Autostart".to_owned(), RegValue::Number(1)),
        ("Notifications".to_owned(), RegValue::Number(0)),
        (
            "Locked".to_owned(),
            RegValue::Texts(
                ["server", "bandwidth", "parallel_parts", "watched_folders", "autostart", "notifications", "sign_out"]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
        (
            "WatchedFolders".to_owned(),
            RegValue::Text(
                r#"[{"path":"/srv/scans","to":"scans/floor-2","settle_seconds":10,"after_upload":"move:sent","include":["*.pdf","*.tif"],"exclude":["draft-*"],"hidden":true},{"path":"~/Outbox"}]"#.into(),
            ),
        ),
    ];
    let json = to_json(&values).unwrap();
    let from_registry = parse_json(&json).unwrap();
    let from_file = parse_json(FULL_JSON).unwrap();
    assert_eq!(
        from_registry,
        Policy {
            schema: None,
            ..from_file
        }
    );

    let wrong = to_json(&[("ParallelParts".into(), RegValue::Text("8".into()))]).unwrap_err();
    assert!(
        wrong.contains("ParallelParts") && wrong.contains("REG_DWORD"),
        "{wrong}"
    );
    let unknown = to_json(&[("Sever".into(), RegValue::Text("x".into()))]).unwrap_err();
    assert!(unknown.contains("unknown value Sever"), "{unknown}");
}

#[test]
fn the_first_place_with_a_policy_wins_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let json = dir.path().join("policy.json");
    let toml = dir.path().join("policy.toml");
    let sources = || {
        vec![
            PolicySource::File(json.clone()),
            PolicySource::File(toml.clone()),
        ]
    };

    assert_eq!(
        LivePolicy::read(sources(), &data),
        PolicyState::default(),
        "no policy"
    );

    std::fs::write(&toml, "server = \"https://toml.example\"\n").unwrap();
    let state = LivePolicy::read(sources(), &data);
    assert_eq!(
        state.policy.unwrap().server.as_deref(),
        Some("https://toml.example")
    );
    assert_eq!(state.origin.unwrap(), toml.display().to_string());

    std::fs::write(
        &json,
        r#"{ "server": "https://json.example", "locked": ["server"] }"#,
    )
    .unwrap();
    let state = LivePolicy::read(sources(), &data);
    assert_eq!(
        state.policy.as_ref().unwrap().server.as_deref(),
        Some("https://json.example")
    );
    assert!(state.is_locked(Setting::Server));
    assert!(state.error.is_none());

    // Broken: the last good policy stays in force, and the error says why.
    std::fs::write(&json, r#"{ "server": "https://json.example", "locked": ["server"], "limits": { "parallel_parts": "x" } }"#).unwrap();
    let state = LivePolicy::read(sources(), &data);
    let error = state.error.clone().unwrap();
    assert_eq!(error.field, "limits.parallel_parts");
    assert_eq!(error.origin, json.display().to_string());
    assert_eq!(
        state.policy.unwrap().server.as_deref(),
        Some("https://json.example")
    );
    assert!(
        data.join(LAST_GOOD_FILE).exists(),
        "kept for the next start too"
    );

    // Removed: no policy at all, and the last good one is forgotten.
    std::fs::remove_file(&json).unwrap();
    std::fs::remove_file(&toml).unwrap();
    assert_eq!(LivePolicy::read(sources(), &data), PolicyState::default());
    assert!(!data.join(LAST_GOOD_FILE).exists());

    // Broken from the first read, with no good one ever seen: no policy, and the error.
    std::fs::write(&json, "{").unwrap();
    let state = LivePolicy::read(sources(), &data);
    assert!(state.policy.is_none());
    assert_eq!(state.error.unwrap().field, "");
}

#[test]
fn an_unreadable_policy_is_an_error_not_no_policy() {
    // A folder where the file should be cannot be read, even by root.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("policy.json");
    std::fs::create_dir(&json).unwrap();
    let state = LivePolicy::read(vec![PolicySource::File(json)], &dir.path().join("d"));
    assert!(state.policy.is_none());
    let error = state.error.expect("an unreadable policy is an error");
    assert!(error.message.contains("cannot read"), "{error}");
}

#[tokio::test]
async fn a_changed_policy_is_applied_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("policy.json");
    std::fs::write(&json, r#"{ "limits": { "parallel_parts": 2 } }"#).unwrap();
    let live = LivePolicy::start(
        vec![PolicySource::File(json.clone())],
        dir.path().join("data"),
    );
    let mut changes = live.subscribe();
    assert_eq!(live.state().policy.unwrap().limits.parallel_parts, Some(2));

    std::fs::write(&json, r#"{ "limits": { "parallel_parts": 6 } }"#).unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(30), changes.changed()).await;
    assert!(changed.is_ok(), "no change seen within 30 s");
    assert_eq!(live.state().policy.unwrap().limits.parallel_parts, Some(6));

    std::fs::write(&json, r#"{ "limits": { "parallel_parts": 99 } }"#).unwrap();
    tokio::time::timeout(Duration::from_secs(30), changes.changed())
        .await
        .expect("the broken policy is reported")
        .unwrap();
    let state = live.state();
    assert_eq!(
        state.policy.unwrap().limits.parallel_parts,
        Some(6),
        "last good kept"
    );
    assert_eq!(state.error.unwrap().field, "limits.parallel_parts");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = parse_json(&format!(r#"{{ "server": "http://127.0.0.1:{port}" }}"#)).unwrap();
    let e = p.probe_server("policy.json").await.unwrap_err();
    assert_eq!(e.field, "server");
    assert!(e.message.contains("cannot be reached"), "{e}");
    assert!(
        Policy::default().probe_server("x").await.is_ok(),
        "no server, nothing to probe"
    );
}

/// The published schema is the one these types describe. `UPDATE_POLICY_SCHEMA=1` writes it.
#[test]
fn published_schema_matches_the_types() {
    let schema = schemars::schema_for!(Policy);
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.schema.json");
    if std::env::var_os("UPDATE_POLICY_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == text,
        "docs/policy.schema.json is out of date: run UPDATE_POLICY_SCHEMA=1 cargo test -p valet-engine policy"
    );
    // The schema refuses unknown keys, like the parser.
    let schema = serde_json::to_value(&schema).unwrap();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}

/// The Group Policy template writes exactly the registry values the app reads.
#[test]
fn the_admx_template_writes_the_values_the_app_reads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/windows/ValetUpload.admx");
    let admx = std::fs::read_to_string(path).unwrap();
    let names: std::collections::BTreeSet<&str> = admx
        .split("valueName=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(names.len() >= 13, "{names:?}");
    for name in &names {
        // Every value the template writes is one the app knows (its type aside).
        let known = [RegValue::Text("1".into()), RegValue::Number(1), RegValue::Texts(vec![])]
            .into_iter()
            .any(|value| !matches!(to_json(&[(name.to_string(), value)]), Err(e) if e.contains("unknown value")));
        assert!(known, "the ADMX writes {name}, which the app does not read");
    }
    for read in [
        "Server",
        "SignInMode",
        "EnrollmentSecret",
        "AllowSignInScreen",
        "SsoIssuer",
        "SsoClientId",
        "WatchedFolders",
        "BandwidthLimit",
        "ParallelParts",
        "MaxFileSize",
        "AllowedStorageHosts",
        "Proxy",
        "Autostart",
        "Notifications",
        "Locked",
    ] {
        assert!(names.contains(read), "the ADMX does not write {read}");
    }
}

/// The example shipped in the package is a valid policy.
#[test]
fn the_packaged_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/linux/policy.example.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let policy = parse_json(&text).unwrap();
    assert_eq!(policy.sign_in.mode, SignInMode::Enrollment);
    assert!(policy.is_locked(Setting::SignOut));
}

#[test]
fn a_locked_server_refuses_sign_ins_with_another_service() {
    let state = |json: &str| PolicyState {
        policy: Some(std::sync::Arc::new(parse_json(json).unwrap())),
        origin: Some("/etc/valet-upload/policy.json".into()),
        error: None,
    };
    let locked = state(r#"{ "server": "https://new.example.com", "locked": ["server"] }"#);
    assert_eq!(locked.refuses_server("https://new.example.com/"), None);
    assert_eq!(locked.refuses_server("https://new.example.com"), None);
    let why = locked
        .refuses_server("https://old.example.com/")
        .expect("another service is refused");
    assert!(
        why.contains("https://new.example.com")
            && why.contains("https://old.example.com")
            && why.contains("/etc/valet-upload/policy.json"),
        "{why}"
    );
    // Not locked: the policy's server is only the default.
    let open = state(r#"{ "server": "https://new.example.com" }"#);
    assert_eq!(open.refuses_server("https://old.example.com/"), None);
    assert_eq!(
        PolicyState::default().refuses_server("https://x.example/"),
        None
    );
}
