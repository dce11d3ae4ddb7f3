//! The loopback answer and its pages; a sign-in waiting on loopback, answered by hand.

use super::loopback::{Callback, Page, read_callback};
use super::*;

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn only_this_sign_ins_state_is_read() {
    assert_eq!(
        read_callback(&query(&[("code", "c1"), ("state", "s1")]), "s1"),
        Callback::Code("c1".into())
    );
    assert_eq!(
        read_callback(&query(&[("code", "c1"), ("state", "other")]), "s1"),
        Callback::Stray
    );
    assert_eq!(
        read_callback(&query(&[("code", "c1")]), "s1"),
        Callback::Stray
    );
    assert_eq!(
        read_callback(
            &query(&[
                ("error", "access_denied"),
                ("error_description", "End-User aborted interaction"),
                ("state", "s1")
            ]),
            "s1"
        ),
        Callback::Refused {
            error: "access_denied".into(),
            description: Some("End-User aborted interaction".into())
        }
    );
}

/// A sign-in waiting on loopback, its provider never called (the answers below need none).
async fn waiting() -> (SsoSignIn, String) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let oauth: OidcClient = Client::new(ClientId::new("valet-upload".into()))
        .set_auth_uri(AuthUrl::new("https://id.invalid/auth".into()).unwrap())
        .set_token_uri(TokenUrl::new("https://id.invalid/token".into()).unwrap())
        .set_redirect_uri(RedirectUrl::new(callback.clone()).unwrap());
    let sign_in = SsoSignIn {
        server: Url::parse("http://127.0.0.1:9/").unwrap(),
        authorization_url: Url::parse("https://id.invalid/auth").unwrap(),
        oauth,
        verifier: PkceCodeVerifier::new("v".repeat(43)),
        state: CsrfToken::new("the-state".into()),
        nonce: CsrfToken::new("the-nonce".into()),
        listener,
        http: http::service_client(),
        keyring: Arc::new(super::super::MemoryKeyring::default()),
        data_dir: std::env::temp_dir(),
    };
    (sign_in, callback)
}

#[tokio::test]
async fn a_stray_answer_is_refused_and_a_cancel_ends_the_sign_in() {
    let (sign_in, callback) = waiting().await;
    let finish = tokio::spawn(sign_in.finish(Duration::from_secs(30)));
    let browser = reqwest::Client::new();
    let stray = browser
        .get(format!("{callback}?code=stolen&state=guessed"))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 400);
    assert!(stray.text().await.unwrap().contains("does not belong"));
    let other = browser
        .get(callback.replace("/callback", "/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(
        !finish.is_finished(),
        "a stray answer does not end the sign-in"
    );
    let cancelled = browser
        .get(format!(
            "{callback}?error=access_denied&error_description=End-User+aborted&state=the-state"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 400);
    assert!(cancelled.text().await.unwrap().contains("cancelled"));
    let error = finish.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::SsoCancelled(_)), "{error}");
    assert_eq!(error.code(), "sso_cancelled");
    assert!(error.to_string().contains("End-User aborted"), "{error}");
}

#[tokio::test]
async fn no_answer_in_time_is_a_clear_error() {
    let (sign_in, _) = waiting().await;
    let error = sign_in
        .finish(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "sso_failed");
    assert!(
        error.to_string().contains("no answer from the browser"),
        "{error}"
    );
}

#[test]
fn pages_escape_what_they_show() {
    let page = Page::error(StatusCode::BAD_REQUEST, "<script>x</script> & \"y\"");
    assert!(
        page.html
            .contains("&lt;script&gt;x&lt;/script&gt; &amp; &quot;y&quot;")
    );
    assert!(!page.html.contains("<script>"));
}

#[test]
fn scopes_always_hold_openid_once() {
    let params = SsoParams {
        issuer: "https://id.example.com".into(),
        client_id: "valet-upload".into(),
        scopes: vec!["email".into(), "openid".into(), "email".into()],
    };
    assert_eq!(params.scopes(), ["openid", "email"]);
}
