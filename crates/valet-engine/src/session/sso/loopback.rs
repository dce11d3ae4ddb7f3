//! The loopback redirect (RFC 8252 §7.3): a small HTTP/1 server on 127.0.0.1 that hands the
//! browser's answer to [`super::SsoSignIn::finish`] and shows the page it picks.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// What came back to the loopback address.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Callback {
    /// No state, or another sign-in's.
    Stray,
    /// The provider said no (RFC 6749 §4.1.2.1).
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The authorization code.
    Code(String),
}

pub(super) fn read_callback(query: &[(String, String)], state: &str) -> Callback {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // Compared in full; a timing difference would tell an attacker on this machine nothing
    // they could use before the sign-in ends.
    if get("state").as_deref() != Some(state) {
        return Callback::Stray;
    }
    if let Some(error) = get("error") {
        return Callback::Refused {
            error,
            description: get("error_description"),
        };
    }
    match get("code").filter(|c| !c.is_empty()) {
        Some(code) => Callback::Code(code),
        None => Callback::Refused {
            error: "no code".into(),
            description: None,
        },
    }
}

/// One answer from the browser, waiting for the page to show.
pub(super) struct Answer {
    pub(super) query: Vec<(String, String)>,
    pub(super) reply: oneshot::Sender<Page>,
}

/// The page the browser shows after the redirect.
pub(super) struct Page {
    status: StatusCode,
    pub(super) html: String,
}

impl Page {
    pub(super) fn signed_in() -> Self {
        Self::new(
            StatusCode::OK,
            "Signed in to Valet Upload",
            "You can close this tab.",
        )
    }

    pub(super) fn error(status: StatusCode, message: &str) -> Self {
        Self::new(status, "Sign-in to Valet Upload failed", message)
    }

    fn new(status: StatusCode, title: &str, message: &str) -> Self {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1 id=\"title\">{title}</h1><p id=\"message\">{}</p></body></html>",
            escape_html(message)
        );
        Self { status, html }
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Serves the loopback address: `GET /callback` is handed to [`super::SsoSignIn::finish`], which
/// picks the page; anything else is 404. One request per connection, so a connection that
/// carried the answer closes once its page is sent, and `flushed` says so.
pub(super) async fn serve(
    listener: TcpListener,
    answers: mpsc::Sender<Answer>,
    flushed: mpsc::Sender<()>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "loopback accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let answers = answers.clone();
        let flushed = flushed.clone();
        tokio::spawn(async move {
            let carried = Arc::new(AtomicBool::new(false));
            let carried_here = carried.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let answers = answers.clone();
                let carried = carried_here.clone();
                async move { Ok::<_, Infallible>(respond(request, &answers, &carried).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if carried.load(Ordering::SeqCst) {
                let _ = flushed.send(()).await;
            }
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    answers: &mpsc::Sender<Answer>,
    carried: &AtomicBool,
) -> Response<Full<Bytes>> {
    let page = if request.method() != hyper::Method::GET || request.uri().path() != "/callback" {
        Page::error(
            StatusCode::NOT_FOUND,
            "This address only receives the answer of a sign-in.",
        )
    } else {
        let query =
            url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let (reply, page) = oneshot::channel();
        let gone = || Page::error(StatusCode::GONE, "This sign-in is over; start it again.");
        if answers.send(Answer { query, reply }).await.is_err() {
            gone()
        } else {
            let page = page.await.unwrap_or_else(|_| gone());
            carried.store(true, Ordering::SeqCst);
            page
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(page.html)));
    *response.status_mut() = page.status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The URL held a code: keep it out of caches and other sites' referrers.
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response.headers_mut().insert(
        hyper::header::REFERRER_POLICY,
        hyper::header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Stops the loopback server however `finish` ends (returned, failed, or dropped).
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
