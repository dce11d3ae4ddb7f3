//! What a policy allows every upload: the engine checks these before it sends a byte.

use std::path::Path;

use url::Url;

use super::{HostAllowList, Policy};
use crate::error::{Error, Result};

/// The policy's limits on uploads, as the engine applies them ([`crate::Engine::set_rules`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadRules {
    /// Largest file, bytes.
    pub max_file_size: Option<u64>,
    /// Hosts file bytes may go to (`None`: any host the service names).
    pub storage_hosts: Option<HostAllowList>,
}

impl UploadRules {
    /// The rules of `policy`; no policy, no rules.
    pub fn from_policy(policy: Option<&Policy>) -> Self {
        policy.map_or_else(Self::default, |p| Self {
            max_file_size: p.limits.max_file_size.map(|m| m.0),
            storage_hosts: p.storage_hosts(),
        })
    }

    /// Refuses a file larger than the policy allows.
    pub fn check_size(&self, path: &Path, size: u64) -> Result<()> {
        match self.max_file_size {
            Some(max) if size > max => Err(Error::PolicyRefused(format!(
                "{}: {size} bytes is more than the {max} bytes your organisation's policy \
                 allows for one file (limits.max_file_size)",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a store the policy does not list; `origin` is `scheme://host[:port]`.
    pub fn check_store(&self, origin: &str) -> Result<()> {
        let Some(hosts) = &self.storage_hosts else {
            return Ok(());
        };
        let allowed = Url::parse(origin).is_ok_and(|url| hosts.allows(&url));
        if allowed {
            Ok(())
        } else {
            Err(Error::PolicyRefused(format!(
                "the service sent this upload to {origin}, which is not among the storage hosts \
                 your organisation's policy allows (allowed_storage_hosts); nothing was sent"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Format;

    #[test]
    fn sizes_and_hosts_follow_the_policy() {
        let policy = Policy::parse(
            r#"{ "limits": { "max_file_size": "1 MiB" }, "allowed_storage_hosts": ["127.0.0.1:9000"] }"#,
            Format::Json,
            "p.json",
        )
        .unwrap();
        let rules = UploadRules::from_policy(Some(&policy));
        assert!(rules.check_size(Path::new("a"), 1 << 20).is_ok());
        let e = rules.check_size(Path::new("a"), (1 << 20) + 1).unwrap_err();
        assert_eq!(e.code(), "policy_refused");
        assert!(e.to_string().contains("max_file_size"), "{e}");
        assert!(rules.check_store("http://127.0.0.1:9000").is_ok());
        let e = rules.check_store("http://127.0.0.1:9001").unwrap_err();
        assert!(e.to_string().contains("allowed_storage_hosts"), "{e}");
        assert!(!e.is_resumable(), "a refusal is final");

        let none = UploadRules::from_policy(None);
        assert!(none.check_size(Path::new("a"), u64::MAX).is_ok());
        assert!(none.check_store("https://anywhere.example").is_ok());
    }
}
