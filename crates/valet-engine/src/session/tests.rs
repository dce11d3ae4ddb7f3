use std::time::{Duration, Instant};

use super::*;

#[test]
fn tokens_are_renewed_before_they_expire() {
    let t = Instant::now();
    assert_eq!(
        renew_at(t, Duration::from_secs(900)),
        t + Duration::from_secs(840)
    );
    assert_eq!(
        renew_at(t, Duration::from_secs(2)),
        t + Duration::from_secs(1),
        "short lives renew at half"
    );
    assert_eq!(renew_at(t, Duration::ZERO), t);
}

#[test]
fn json_errors_never_quote_the_reply() {
    let e =
        serde_json::from_str::<TokenResponse>(r#"{"access_token": 42, "secret-ish": "tok_abc"}"#)
            .unwrap_err();
    let shown = json_error("POST /v1/auth/token", &e).to_string();
    assert!(
        !shown.contains("tok_abc") && !shown.contains("42"),
        "{shown}"
    );
    assert!(shown.contains("wrong shape"), "{shown}");
}

#[test]
fn api_token_sessions_need_a_token_and_a_safe_url() {
    assert!(Session::with_api_token("http://127.0.0.1:1", SecretString::from("t")).is_ok());
    let e =
        Session::with_api_token("http://valet.example.com", SecretString::from("t")).unwrap_err();
    assert_eq!(e.code(), "insecure_url");
    let e =
        Session::with_api_token("https://valet.example.com", SecretString::from(" ")).unwrap_err();
    assert_eq!(e.code(), "not_signed_in");
}

#[test]
fn saved_session_without_sign_in_says_how_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let e = Session::saved(dir.path(), Arc::new(MemoryKeyring::new())).unwrap_err();
    assert_eq!(e.code(), "not_signed_in");
    assert!(e.to_string().contains("valet login"), "{e}");
}
