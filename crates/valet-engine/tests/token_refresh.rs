//! Access tokens are renewed shortly before they expire by one refresher, and the rotated
//! refresh token is written back to the keyring (canned replies from a loopback server).

mod canned;

use std::sync::Arc;
use std::time::Duration;

use canned::{Reply, serve};
use valet_engine::{ExposeSecret, MemoryKeyring, SecretStore, SecretString, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresher_renews_before_expiry_and_rotates_the_refresh_token() {
    // Two-second access tokens: renewed after one second (half their life).
    let tokens = r#"{"access_token":"a","token_type":"Bearer","expires_in":2,"refresh_token":"rotated","refresh_expires_in":60,"user":"u"}"#;
    let server = serve(vec![
        ("/v1/auth/token", Reply::Body(200, tokens.into())),
        (
            "/v1/me",
            Reply::Body(200, r#"{"user":"u","prefix":"users/u"}"#.into()),
        ),
    ])
    .await;
    let token_calls = || {
        server
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("/v1/auth/token"))
            .count()
    };
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(MemoryKeyring::new());
    let session = Arc::new(
        Session::login(
            &server.url,
            "u",
            SecretString::from("pw"),
            keyring.clone(),
            dir.path(),
        )
        .await
        .unwrap(),
    );
    let account = format!("u@{}", server.url);
    keyring.set(&account, &SecretString::from("first")).unwrap();
    session.me().await.unwrap();
    assert_eq!(token_calls(), 1, "a fresh access token is reused");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.me().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(token_calls(), 2, "six callers near expiry, one refresh");
    let saved = keyring.get(&account).unwrap().unwrap();
    assert_eq!(
        saved.expose_secret(),
        "rotated",
        "the rotated token is written back"
    );

    // A later process finds the sign-in in the data dir and the keyring.
    let again = Session::saved(dir.path(), keyring.clone()).unwrap();
    again.me().await.unwrap();
    assert_eq!(
        token_calls(),
        3,
        "a new process refreshes once from the keyring"
    );
}

#[tokio::test]
async fn a_revoked_sign_in_says_to_sign_in_again() {
    let server = serve(vec![(
        "/v1/auth/token",
        Reply::Body(401, r#"{"code":"token_revoked","message":"reused"}"#.into()),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(MemoryKeyring::new());
    valet_engine::SignIn {
        server: format!("{}/", server.url),
        user: "u".into(),
    }
    .save(dir.path())
    .unwrap();
    let e = Session::saved(dir.path(), keyring.clone())
        .unwrap()
        .me()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_signed_in", "no refresh token saved: {e}");
    keyring
        .set(&format!("u@{}", server.url), &SecretString::from("old"))
        .unwrap();
    let e = Session::saved(dir.path(), keyring)
        .unwrap()
        .me()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "sign_in_expired", "{e}");
    assert!(e.to_string().contains("valet login"), "{e}");
    assert!(e.is_sign_in());
}

#[tokio::test]
async fn a_failed_refresh_is_sent_once_never_retried() {
    // A retried refresh would present a refresh token the service may already have rotated:
    // reuse, which revokes the whole sign-in. So a refresh that fails is not sent again.
    let server = serve(vec![(
        "/v1/auth/token",
        Reply::Body(502, r#"{"code":"internal","message":"bad gateway"}"#.into()),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(MemoryKeyring::new());
    valet_engine::SignIn {
        server: format!("{}/", server.url),
        user: "u".into(),
    }
    .save(dir.path())
    .unwrap();
    keyring
        .set(&format!("u@{}", server.url), &SecretString::from("once"))
        .unwrap();
    let mut session = Session::saved(dir.path(), keyring).unwrap();
    session.set_retry_policy(valet_engine::RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_attempts: 5,
        deadline: Duration::from_secs(5),
    });
    let e = session.me().await.unwrap_err();
    assert!(e.is_resumable(), "a lost refresh can be tried later: {e}");
    let hits = server.hits.lock().unwrap().clone();
    let refreshes = hits.iter().filter(|l| l.contains("/v1/auth/token")).count();
    assert_eq!(refreshes, 1, "one refresh request, not retried: {hits:?}");
    assert!(
        !hits.iter().any(|l| l.contains("/v1/me")),
        "nothing is sent without a token: {hits:?}"
    );
}
