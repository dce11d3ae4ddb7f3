use valet_tests::PART_SIZE;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::random_file;
use valet_tests::seaweed::SeaweedFs;
use valet_tests::service::{Service, ServiceOptions};

/// What must never appear in a log line or a file of the client's data dir. Deliberately
/// literal: the signature parameters of SigV4 URLs.
const NEVER_LOGGED: &[&str] = &["X-Amz-Signature=", "X-Amz-Credential="];

/// Prefixes of the service's access, refresh and API tokens: followed by token characters they
/// are a token (the bare prefix may appear in text the service logs, such as its schema).
const TOKEN_PREFIXES: &[&str] = &["vat_", "vrt_", "vpt_"];

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for needle in NEVER_LOGGED.iter().chain(secrets) {
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            panic!("{what} leaks `{needle}` in this line:\n{line}");
        }
    }
    for prefix in TOKEN_PREFIXES {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            let token_chars = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .count();
            assert!(
                token_chars < 16,
                "{what} leaks a `{prefix}` token: {}",
                &rest[..token_chars]
            );
        }
    }
}

/// Needs an OS keyring: CI runs the suite inside `dbus-run-session` with an unlocked
/// gnome-keyring (scripts/test.sh), as a desktop session would have.
#[test]
fn sign_in_uses_the_keyring_and_no_secret_reaches_a_log() {
    let store = SeaweedFs::shared_or_start();
    let service = Service::start(
        &store,
        ServiceOptions {
            log: "debug".into(),
            ..ServiceOptions::default()
        },
    );
    let password = "correct horse battery staple 42";
    service.add_user("carol", password);
    let api_token = service.add_user_with_token("dave");
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "secret-test.bin", PART_SIZE + 3, 9);
    let part_size = PART_SIZE.to_string();
    let mut stderr = String::new();

    // A home of its own (config, cache, state and data dirs in it), so that every file the
    // client writes anywhere is searched, not only its data dir.
    let home = tempfile::tempdir().unwrap();
    let in_home = |command: &mut std::process::Command| {
        command.env("HOME", home.path());
        for (var, dir) in [
            ("XDG_CONFIG_HOME", ".config"),
            ("XDG_CACHE_HOME", ".cache"),
            ("XDG_STATE_HOME", ".local/state"),
            ("XDG_DATA_HOME", ".local/share"),
        ] {
            command.env(var, home.path().join(dir));
        }
    };
    let run_in_home = |mut command: std::process::Command| {
        in_home(&mut command);
        command.output().unwrap()
    };
    let mut stdout = String::new();

    // Sign in with a password; the refresh token goes to the OS keyring.
    let carol = Valet::signed_out(&service.url).log_level("trace");
    let out = carol.login_with("carol", password, in_home);
    stderr += &String::from_utf8_lossy(&out.stderr);
    stdout += &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "valet login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every refresh token the keyring held: each must stay out of every file and log.
    let keyring_account = format!("carol@{}", service.url.trim_end_matches('/'));
    let in_keyring = || {
        use valet_engine::{ExposeSecret as _, SecretStore as _};
        valet_engine::OsKeyring
            .get(&keyring_account)
            .expect("the OS keyring answers")
            .map(|secret| secret.expose_secret().to_owned())
    };
    let mut refresh_tokens =
        vec![in_keyring().expect("login left its refresh token in the keyring")];

    // Signed in again silently from the keyring, twice (the refresh token rotates each time).
    for round in 0..2 {
        let out = run_in_home(carol.command(&[
            "put",
            "--json",
            "--part-size",
            &part_size,
            file.to_str().unwrap(),
        ]));
        let run = parse_run(out);
        stderr += &run.stderr;
        stdout += &serde_json::to_string(&run.lines).unwrap();
        assert_eq!(run.verified()["verified"], true, "round {round}");
        refresh_tokens.push(in_keyring().expect("still signed in"));
    }
    assert!(
        refresh_tokens.iter().all(|t| t.starts_with("vrt_")),
        "the keyring holds refresh tokens"
    );

    let out = run_in_home(carol.command(&["logout"]));
    stderr += &String::from_utf8_lossy(&out.stderr);
    stdout += &String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        in_keyring(),
        None,
        "logout removed the token from the keyring"
    );
    assert!(
        out.status.success(),
        "valet logout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = parse_run(run_in_home(carol.command(&[
        "put",
        "--json",
        file.to_str().unwrap(),
    ])));
    stderr += &after.stderr;
    stdout += &serde_json::to_string(&after.lines).unwrap();
    assert_eq!(
        after.code,
        Some(2),
        "signed out: put is refused with the sign-in exit code: {after:?}"
    );

    // Scripts sign in with an API token from the environment.
    let dave = Valet::with_token(&service.url, &api_token).log_level("trace");
    let run = parse_run(
        dave.command(&[
            "put",
            "--json",
            "--part-size",
            &part_size,
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    stderr += &run.stderr;
    run.verified();

    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "the client really logged at trace level"
    );
    assert!(
        service.log().contains("DEBUG"),
        "the service really logged at debug level"
    );
    stdout += &serde_json::to_string(&run.lines).unwrap();
    let mut secrets = vec![password, api_token.as_str()];
    secrets.extend(refresh_tokens.iter().map(String::as_str));
    assert_clean("client log", &stderr, &secrets);
    assert_clean("client output", &stdout, &secrets);
    assert_clean("service log", &service.log(), &secrets);
    let files: Vec<_> = [carol.data_dir(), dave.data_dir(), home.path()]
        .into_iter()
        .flat_map(walk)
        .collect();
    assert!(!files.is_empty(), "the client wrote files to search");
    for entry in files {
        let bytes = std::fs::read(&entry).unwrap();
        assert_clean(
            &entry.display().to_string(),
            &String::from_utf8_lossy(&bytes),
            &secrets,
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}

/// The signature parameters of Azure SAS and GCS V4 URLs, and the stores' own keys: none may
/// appear in a log line or the client's data dir. Deliberately literal.
const STORE_SECRETS: &[&str] = &[
    "sig=",
    "X-Goog-Signature=",
    "X-Goog-Credential=",
    valet_tests::azurite::ACCOUNT_KEY,
    "BEGIN PRIVATE KEY",
];

mod store_keys_never_reach_a_log {
    use valet_tests::store::StoreKind;

    #[test]
    fn azure() {
        super::store_keys_never_reach_a_log(StoreKind::Azure)
    }

    #[test]
    fn gcs() {
        super::store_keys_never_reach_a_log(StoreKind::Gcs)
    }
}

/// A two-part upload to Azure or GCS with both sides logging at TRACE: the keys' signatures
/// and the store credentials stay out of every log and of the journal.
fn store_keys_never_reach_a_log(kind: valet_tests::store::StoreKind) {
    let store = valet_tests::store::TestStore::shared_or_start(kind);
    let service = Service::start(
        &store,
        ServiceOptions {
            log: "trace".into(),
            ..ServiceOptions::default()
        },
    );
    let token = service.add_user_with_token("erin");
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "secret-store.bin", PART_SIZE + 3, 11);
    let part_size = PART_SIZE.to_string();
    let erin = Valet::with_token(&service.url, &token).log_level("trace");
    let run = parse_run(
        erin.command(&[
            "put",
            "--json",
            "--part-size",
            &part_size,
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    run.verified();
    assert!(
        run.stderr.contains("TRACE"),
        "the client really logged at trace level"
    );
    assert!(
        service.log().contains("TRACE"),
        "the service really logged at trace level"
    );
    assert_clean("client log", &run.stderr, &[&token]);
    assert_clean("service log", &service.log(), &[&token]);
    for needle in STORE_SECRETS {
        for (what, text) in [("client log", &run.stderr), ("service log", &service.log())] {
            if let Some(line) = text.lines().find(|line| line.contains(needle)) {
                panic!("{what} ({kind:?}) leaks `{needle}` in this line:\n{line}");
            }
        }
    }
    for entry in walk(erin.data_dir()) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        for needle in STORE_SECRETS {
            assert!(
                !text.contains(needle),
                "{} keeps `{needle}`",
                entry.display()
            );
        }
    }
}
