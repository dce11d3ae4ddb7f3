//! Which URLs the engine talks to, and how they appear in logs and errors.
//!
//! Rules (refuse rather than weaken):
//! - the service URL and every key URL must be `https://`, except on a loopback host
//!   (127.0.0.0/8, `::1`, `localhost`), where plain `http://` is accepted for development;
//! - a key URL must have exactly the origin (scheme, host, port) the service announced for the
//!   upload in [`valet_protocol::StoreInfo::origin`];
//! - a URL is shown as `scheme://host[:port]/path`: never its query (a key's signature lives
//!   there) and never user info.

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::{Error, Result};

/// `scheme://host[:port]/path` of `url`: no user info, no query, no fragment.
pub fn redact(url: &Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    match url.host() {
        Some(Host::Ipv6(ip)) => shown.push_str(&format!("[{ip}]")),
        Some(host) => shown.push_str(&host.to_string()),
        None => {}
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// [`redact`] for a string that may not even parse: everything from the first `?` or `#` is cut,
/// and so is user info.
pub fn redact_str(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => redact(&parsed),
        Err(_) => {
            let cut = url.split(['?', '#']).next().unwrap_or_default();
            let (scheme, rest) = cut.split_once("://").unwrap_or(("", cut));
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or_default();
            if scheme.is_empty() {
                format!("{host}{path}")
            } else {
                format!("{scheme}://{host}{path}")
            }
        }
    }
}

/// Whether `url`'s host is loopback: 127.0.0.0/8, `::1` or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Refuses anything but `https://`, or `http://` on a loopback host.
pub fn check_secure(url: &Url) -> Result<()> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(Error::InsecureUrl { url: redact(url) }),
    }
}

/// Parses and checks the service's base URL (`https://valet.example.com`, or `http://127.0.0.1:8080`).
pub fn parse_server(server: &str) -> Result<Url> {
    let mut url = Url::parse(server.trim()).map_err(|e| Error::BadUrl {
        url: redact_str(server),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::BadUrl {
            url: redact_str(server),
            reason: "user info is not allowed in the service URL".into(),
        });
    }
    check_secure(&url)?;
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The origin (`scheme://host[:port]`, default port left out) of `url`.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Parses a key URL and checks that it is safe and points at `expected_origin`.
pub fn check_key_url(key_url: &str, expected_origin: &str) -> Result<Url> {
    let url = Url::parse(key_url).map_err(|e| Error::BadReply {
        from: "key".into(),
        what: format!("key URL {} does not parse: {e}", redact_str(key_url)),
    })?;
    check_secure(&url)?;
    let expected = Url::parse(expected_origin).map_err(|e| Error::BadReply {
        from: "upload".into(),
        what: format!("store origin {expected_origin:?} does not parse: {e}"),
    })?;
    check_secure(&expected)?;
    let (got, want) = (origin(&url), origin(&expected));
    if got != want {
        return Err(Error::ForeignKeyHost {
            origin: got,
            expected: want,
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_query_and_user_info() {
        let url = Url::parse("https://u:p@s3.example.com:9000/b/k?X-Amz-Signature=abc#f").unwrap();
        assert_eq!(redact(&url), "https://s3.example.com:9000/b/k");
        assert_eq!(
            redact_str("http://[::1]:8/x?sig=1"),
            "http://[::1]:8/x",
            "IPv6 keeps its brackets"
        );
        let broken = redact_str("ht!tp://u:secret@host/p?X-Amz-Signature=abc");
        assert!(
            !broken.contains("abc") && !broken.contains("secret"),
            "{broken}"
        );
    }

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "https://valet.example.com",
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://[::1]:80",
            "http://localhost:1",
            "http://LOCALHOST",
        ] {
            assert!(parse_server(ok).is_ok(), "{ok} is allowed");
        }
        for bad in [
            "http://valet.example.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "http://128.0.0.1",
            "ftp://127.0.0.1",
            "file:///etc/passwd",
        ] {
            let err = parse_server(bad).unwrap_err();
            assert_eq!(err.code(), "insecure_url", "{bad}: {err}");
        }
        assert_eq!(
            parse_server("https://u:pw@x.example").unwrap_err().code(),
            "bad_url"
        );
    }

    #[test]
    fn key_urls_must_match_the_announced_origin() {
        let ok = check_key_url(
            "https://s3.example.com/b/k?sig=1",
            "https://s3.example.com:443",
        );
        assert!(ok.is_ok(), "default port is the same origin");
        let err = check_key_url(
            "https://evil.example.com/b/k?sig=1",
            "https://s3.example.com",
        )
        .unwrap_err();
        assert_eq!(err.code(), "foreign_key_host");
        assert!(!err.to_string().contains("sig=1"), "{err}");
        let err = check_key_url("http://127.0.0.1:9001/b", "http://127.0.0.1:9000").unwrap_err();
        assert_eq!(
            err.code(),
            "foreign_key_host",
            "another port is another origin"
        );
        let err =
            check_key_url("http://s3.example.com/b?sig=1", "http://s3.example.com").unwrap_err();
        assert_eq!(err.code(), "insecure_url");
        assert!(!err.to_string().contains("sig=1"), "{err}");
    }
}
