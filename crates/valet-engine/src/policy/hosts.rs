//! The storage hosts a policy allows file bytes to go to.

use url::Url;

/// `storage.example.com`, `*.blob.core.windows.net` (any sub-domain, not the domain itself),
/// either with an optional `:port` (without one, any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// Lower case; for a wildcard, the suffix with its leading dot (`.blob.core.windows.net`).
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let bad = |why: &str| {
            Err(format!(
                "{text:?}: {why} (examples: storage.example.com, *.blob.core.windows.net, 127.0.0.1:9000)"
            ))
        };
        if text.contains("://") || text.contains('/') {
            return bad("a host name, not a URL");
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                match port.parse() {
                    Ok(port) => (host.to_owned(), Some(port)),
                    Err(_) => return bad("the port is not a number"),
                }
            }
            _ => (text.clone(), None),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (format!(".{rest}"), true),
            None => (host, false),
        };
        let name = host.trim_start_matches('.');
        if name.is_empty() || name.contains('*') {
            return bad("only a leading `*.` may be a wildcard");
        }
        if url::Host::parse(name).is_err() {
            return bad("not a host name");
        }
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = if self.wildcard {
            host.ends_with(&self.host)
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// The hosts of a policy's `allowed_storage_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowList {
    patterns: Vec<HostPattern>,
}

impl HostAllowList {
    /// The list; patterns that do not parse are left out (a checked policy has none).
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect(),
        }
    }

    /// Whether file bytes may be sent to `url`'s host.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.patterns.iter().any(|p| p.allows(&host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], url: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        HostAllowList::new(&patterns).allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn exact_wildcard_and_port() {
        assert!(allows(
            &["storage.example.com"],
            "https://storage.example.com/b/k"
        ));
        assert!(allows(
            &["storage.example.com"],
            "https://STORAGE.example.com:444/b"
        ));
        assert!(!allows(
            &["storage.example.com"],
            "https://evil.example.com/b"
        ));
        assert!(allows(
            &["*.blob.core.windows.net"],
            "https://acct.blob.core.windows.net/c/b"
        ));
        assert!(!allows(
            &["*.blob.core.windows.net"],
            "https://blob.core.windows.net/c/b"
        ));
        assert!(!allows(
            &["*.blob.core.windows.net"],
            "https://acct.blob.core.windows.net.evil.io/"
        ));
        assert!(allows(&["127.0.0.1:9000"], "http://127.0.0.1:9000/b"));
        assert!(!allows(&["127.0.0.1:9000"], "http://127.0.0.1:9001/b"));
        assert!(allows(&["s3.example.com:443"], "https://s3.example.com/b"));
        assert!(allows(&["[::1]:10000"], "http://[::1]:10000/acct"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "https://s3.example.com",
            "s3.example.com/bucket",
            "*",
            "a.*.com",
            "host:port",
            "",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
