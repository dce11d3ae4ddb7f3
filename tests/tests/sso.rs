//! Single sign-on end to end: a real OpenID Connect provider (node oidc-provider), the real
//! valet service trusting it, the real `valet login --sso`, and the browser step in a real
//! browser (WebKitGTK's MiniBrowser under WebDriver, on Xvfb).
//!
//! The ID token checks one by one (audience, nonce, expiry, issuer, `alg: none`, …) are unit
//! tests of the service's `sso` module, with tokens signed there; here the whole flow runs, and
//! the refusals a real provider can produce cheaply.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use valet_protocol::{ErrorCode, SsoInfo, TokenRequest, TokenResponse};
use valet_tests::api::Api;
use valet_tests::cli::Valet;
use valet_tests::files::{random_file, sha256_file};
use valet_tests::oidc::{Browser, CLIENT_ID, OidcProvider};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

/// The provider's people: the login is the subject (`sub`) of their ID tokens.
fn accounts() -> Value {
    json!({
        "alice": { "email": "Alice.Smith@Example.com", "email_verified": true },
        "mallory": { "email": "mallory@example.com", "email_verified": false },
    })
}

/// The `sso_sign_in*` events of the audit log.
fn sso_events(service: &Service) -> Vec<Value> {
    service
        .audit()
        .into_iter()
        .filter(|e| e["event"].as_str().unwrap_or_default().starts_with("sso_"))
        .collect()
}

#[test]
#[ignore = "needs node's oidc-provider from `npm ci`: run scripts/test-gui.sh"]
fn the_service_names_its_provider_and_refuses_tokens_it_cannot_trust() {
    valet_tests::install_tls_provider();
    let store = TestStore::shared_or_start(StoreKind::S3);
    let provider = OidcProvider::start(&accounts());
    let service = Service::start(
        &store,
        ServiceOptions {
            extra_config: provider.service_config(),
            ..ServiceOptions::default()
        },
    );
    let api = Api::new(&service.url, "none");
    let info: SsoInfo = api.get("/auth/sso").expect("GET /v1/auth/sso");
    assert_eq!(info.issuer, provider.issuer);
    assert_eq!(info.client_id, CLIENT_ID);
    assert!(info.scopes.iter().any(|s| s == "openid"), "{info:?}");

    // Tokens the provider never signed: each refused with the check that failed.
    let header = |alg: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"alg":"{alg}","kid":"valet-test-rs256"}}"#))
    };
    let cases = [
        (
            format!("{}.e30.", header("none")),
            "only asymmetric algorithms",
        ),
        (
            format!("{}.e30.c2ln", header("HS256")),
            "only asymmetric algorithms",
        ),
        (
            format!("{}.e30.c2ln", header("RS256")),
            "signature does not verify",
        ),
        ("garbage".to_owned(), "not readable"),
    ];
    for (id_token, wanted) in &cases {
        let refused = api
            .post::<_, TokenResponse>(
                "/auth/token",
                &TokenRequest::IdToken {
                    id_token: id_token.clone(),
                    nonce: "n".into(),
                },
            )
            .expect_err("an untrusted ID token is refused");
        assert_eq!(refused.code, ErrorCode::InvalidCredentials, "{refused:?}");
        assert!(refused.message.contains(wanted), "{wanted}: {refused:?}");
    }
    // Real ID tokens of the provider: one for another application, one with another nonce,
    // and a good one, which works once.
    let trade = |id_token: &str, nonce: &str| {
        api.post::<_, TokenResponse>(
            "/auth/token",
            &TokenRequest::IdToken {
                id_token: id_token.into(),
                nonce: nonce.into(),
            },
        )
    };
    let for_other_app = provider.id_token("other-app", "alice", "nonce-1");
    let refused = trade(&for_other_app, "nonce-1").expect_err("another audience");
    assert!(
        refused
            .message
            .contains("audience is not this service's client id"),
        "{refused:?}"
    );
    let good = provider.id_token(CLIENT_ID, "alice", "nonce-2");
    let refused = trade(&good, "nonce-3").expect_err("another nonce");
    assert!(refused.message.contains("nonce"), "{refused:?}");
    let signed_in = trade(&good, "nonce-2").expect("a good ID token");
    assert_eq!(signed_in.user, "alice.smith-example.com");
    let refused = trade(&good, "nonce-2").expect_err("the same ID token again");
    assert!(refused.message.contains("already used"), "{refused:?}");

    let events = sso_events(&service);
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sso_sign_in_failed")
        .collect();
    assert_eq!(failed.len(), cases.len() + 3, "{events:?}");
    assert_eq!(events.len(), cases.len() + 4, "one sso_sign_in: {events:?}");

    // A service without [sso] says so, and `valet login --sso` tells the person.
    let plain = Service::start(&store, ServiceOptions::default());
    let none = Api::new(&plain.url, "none")
        .get::<SsoInfo>("/auth/sso")
        .expect_err("no [sso]");
    assert_eq!(none.code, ErrorCode::NotFound);
    let valet = Valet::signed_out(&plain.url);
    let out = valet.run(&["login", "--sso", "--server", &plain.url, "--no-browser"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no single sign-on"), "{stderr}");
}

/// `valet login --sso --no-browser` started in the background, and the address it printed:
/// with `--server`, or with `policy` naming the service and the provider.
fn start_login(valet: &Valet, policy: Option<&Path>) -> (Child, std::path::PathBuf, String) {
    let stderr = valet
        .data_dir()
        .join(format!("{}.log", valet_tests::random_name("login")));
    let mut command = match policy {
        Some(policy) => {
            let mut command = valet.command(&["login", "--sso", "--no-browser"]);
            command.env("VALET_POLICY", policy);
            command
        }
        None => valet.command(&["login", "--sso", "--server", valet.server(), "--no-browser"]),
    };
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn valet login --sso");
    let url = valet_tests::wait_for("the address to open", Duration::from_secs(30), || {
        std::fs::read_to_string(&stderr).ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("Open this address to sign in: "))
                .map(str::to_owned)
        })
    });
    (child, stderr, url)
}

/// Waits for `child` to end; its exit code and stderr.
fn finished(mut child: Child, stderr: &Path) -> (Option<i32>, String) {
    let status = valet_tests::wait_for("valet login to end", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    (status.code(), std::fs::read_to_string(stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb and WebKitWebDriver: run scripts/test-gui.sh"]
async fn a_person_signs_in_through_the_provider_in_a_real_browser_and_uploads() {
    valet_tests::install_tls_provider();
    let started = Instant::now();
    // The store's readiness probe is a blocking client: off the async threads.
    let (_store, provider, service) = tokio::task::block_in_place(|| {
        let store = TestStore::shared_or_start(StoreKind::S3);
        let provider = OidcProvider::start(&accounts());
        let service = Service::start(
            &store,
            ServiceOptions {
                extra_config: provider.service_config(),
                log: "debug".into(),
                ..ServiceOptions::default()
            },
        );
        (store, provider, service)
    });
    let browser = Browser::start().await;

    // First sign-in: the provider's login and consent pages, then the loopback page.
    let valet = Valet::signed_out(&service.url).log_level("debug");
    let (child, stderr_path, url) = start_login(&valet, None);
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("nonce=") && url.contains("state="), "{url}");
    let landing = browser.sign_in_at(&url, "alice", false).await;
    let (code, stderr) = tokio::task::block_in_place(|| finished(child, &stderr_path));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        landing.title, "Signed in to Valet Upload",
        "{}",
        landing.message
    );
    assert!(
        stderr.contains("signed in as alice.smith-example.com at "),
        "{stderr}"
    );
    let sign_in_secs = started.elapsed().as_secs_f64();
    let first_login_log = stderr;

    // An upload under the SSO account, verified, byte for byte in the store.
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "report.pdf", 6 * 1024 * 1024 + 17, 7);
    let put = tokio::task::block_in_place(|| valet.put(&[&file], &[]));
    let line = put.verified();
    let key = line["object"].as_str().unwrap().to_owned();
    assert!(
        key.contains("/alice.smith-example.com/"),
        "the SSO account's prefix: {key}"
    );
    let stored = tokio::task::block_in_place(|| service.store().object_digest(&key));
    assert_eq!(
        stored,
        Some((std::fs::metadata(&file).unwrap().len(), sha256_file(&file))),
        "{key} in the store is byte-identical to the file"
    );

    // Signing in again, elsewhere, finds the same account (the provider remembers the person,
    // so the browser may go straight back). This machine has a policy naming the service and
    // the provider; a password sign-in is refused there.
    let again = Valet::signed_out(&service.url);
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({
            "server": service.url,
            "sign_in": { "mode": "sso", "sso": { "issuer": provider.issuer, "client_id": CLIENT_ID } }
        })
        .to_string(),
    )
    .unwrap();
    let out = again
        .command(&["login", "--server", &service.url, "--user", "alice"])
        .env("VALET_POLICY", &policy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run `valet login --sso`"), "{stderr}");
    let (child, stderr_path, url) = start_login(&again, Some(&policy));
    let second = browser.sign_in_at(&url, "alice", false).await;
    let (code, stderr) = tokio::task::block_in_place(|| finished(child, &stderr_path));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(second.title, "Signed in to Valet Upload");
    assert!(
        stderr.contains("signed in as alice.smith-example.com "),
        "{stderr}"
    );

    // A person whose email the provider has not verified is refused, and told why.
    client_forgets_the_provider(&browser).await;
    let refused = Valet::signed_out(&service.url);
    let (child, stderr_path, url) = start_login(&refused, None);
    let landing_refused = browser.sign_in_at(&url, "mallory", false).await;
    let (code, stderr) = tokio::task::block_in_place(|| finished(child, &stderr_path));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not verified"), "{stderr}");
    assert_eq!(landing_refused.title, "Sign-in to Valet Upload failed");
    assert!(
        landing_refused.message.contains("not verified"),
        "{}",
        landing_refused.message
    );

    // Cancelled at the provider's page.
    client_forgets_the_provider(&browser).await;
    let cancelled = Valet::signed_out(&service.url);
    let (child, stderr_path, url) = start_login(&cancelled, None);
    let landing_cancelled = browser.sign_in_at(&url, "alice", true).await;
    let (code, stderr) = tokio::task::block_in_place(|| finished(child, &stderr_path));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("sign-in was cancelled at your organisation's sign-in page"),
        "{stderr}"
    );
    assert!(landing_cancelled.message.contains("cancelled"));
    browser.quit().await;

    // The audit log: two sign-ins of one account (made once), one refusal with its reason.
    let events = tokio::task::block_in_place(|| sso_events(&service));
    let signed_in: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sso_sign_in")
        .collect();
    assert_eq!(signed_in.len(), 2, "{events:?}");
    assert!(
        signed_in
            .iter()
            .all(|e| e["user"] == "alice.smith-example.com")
    );
    assert_eq!(signed_in[0]["detail"]["new_account"], true);
    assert_eq!(signed_in[1]["detail"]["new_account"], false);
    assert_eq!(signed_in[0]["detail"]["subject"], "alice");
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sso_sign_in_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(
        failed[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("not verified")
    );

    // No token or code in any log: no JWT (they all start `eyJ`), not the code the browser
    // carried to the loopback address, no valet token (a prefix and a long random tail).
    let code_param = url::Url::parse(&landing.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("the loopback URL held the code");
    assert!(holds_valet_token(
        "Bearer vat_q8NfG2mZ0xYk3LwP9sTa7uVbC1dE4hJ6"
    ));
    for (name, log) in [
        ("service", service.log()),
        ("valet login", first_login_log),
        ("provider", provider.log()),
    ] {
        for secret in ["eyJ", code_param.as_str()] {
            assert!(!log.contains(secret), "{name} log holds {secret:?}:\n{log}");
        }
        assert!(
            !holds_valet_token(&log),
            "{name} log holds a valet token:\n{log}"
        );
    }
    eprintln!(
        "sso: first sign-in in {sign_in_secs:.1} s, whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Whether `text` holds something shaped like a valet access or refresh token: its prefix and
/// at least 20 token characters (the schema's comments name the prefixes alone).
fn holds_valet_token(text: &str) -> bool {
    ["vat_", "vrt_"].iter().any(|prefix| {
        text.match_indices(prefix).any(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
                .count()
                >= 20
        })
    })
}

/// Ends the browser's session at the provider (its cookies), so the next sign-in asks again.
async fn client_forgets_the_provider(browser: &Browser) {
    browser.client.delete_all_cookies().await.unwrap();
}
