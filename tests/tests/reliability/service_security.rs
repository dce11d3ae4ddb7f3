//! The service's API attacked from outside, against the real `valet-service serve` and
//! SeaweedFS: who may call what, sign-in guessing, hostile names, sizes, types and bodies, and
//! whether anything can rewrite the audit log. The TLS listener itself (old protocol versions,
//! weak suites, plain HTTP on its port) is tested in-process by
//! `crates/valet-service/tests/tls.rs`.

/// No method on any path changes or removes an audit entry; headers on every answer.
mod audit_log;
/// Every route × own, another user's and no upload × no, malformed, expired, revoked and
/// valid tokens.
mod authorization;
/// Path tricks and unicode in names and folders, declared sizes that are not the sent ones,
/// content types, body and header sizes.
mod hostile_input;
/// Failed sign-ins wait: per account and address, per address, bounded, ended by a success.
mod throttling;

use valet_protocol::TokenResponse;
use valet_tests::api::{RawAnswer, client_from, password_grant, send};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

/// The two accounts of every test here.
const ANN: &str = "ann";
const BOB: &str = "bob";

/// The password of `user` in these tests.
fn password_of(user: &str) -> String {
    format!("{user}-correct-horse-battery")
}

/// A service on SeaweedFS with `extra_config` appended, and the accounts ann and bob.
struct Deployment {
    service: Service,
    // Dropped last: the service talks to it until then.
    _store: TestStore,
}

impl Deployment {
    fn start(extra_config: &str) -> Self {
        let store = TestStore::shared_or_start(StoreKind::S3);
        let service = Service::start(
            &store,
            ServiceOptions {
                extra_config: extra_config.to_owned(),
                ..ServiceOptions::default()
            },
        );
        for user in [ANN, BOB] {
            service.add_user(user, &password_of(user));
        }
        Self {
            service,
            _store: store,
        }
    }

    fn url(&self) -> &str {
        &self.service.url
    }

    /// A password sign-in of `user` from the default address; panics unless it works.
    fn sign_in(&self, user: &str) -> TokenResponse {
        let answer = password_grant(&client_from(None), self.url(), user, &password_of(user));
        assert_eq!(answer.status, 200, "{user} signs in: {answer:?}");
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// A new API token of `user`, labelled `label`, and its id (for `token revoke`).
    fn api_token(&self, user: &str, label: &str) -> (String, String) {
        let out = self
            .service
            .admin(&["token", "issue", user, "--label", label])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let id = self
            .service
            .admin_json(&["token", "list", user, "--json"])
            .into_iter()
            .find(|t| t["label"] == label)
            .and_then(|t| t["id"].as_str().map(str::to_owned))
            .expect("token list shows the new token");
        (token, id)
    }

    /// `method path` with `Authorization: Bearer token` and a JSON `body`.
    fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> RawAnswer {
        send(
            &client_from(None),
            self.url(),
            method,
            path,
            Some(&format!("Bearer {token}")),
            body.map(|b| b.to_string().into_bytes()),
        )
    }
}

/// `POST /v1/uploads` of a small file by `token`; the answer.
fn create_upload(d: &Deployment, token: &str, file_name: &str, size: u64) -> RawAnswer {
    d.call(
        token,
        "POST",
        "/v1/uploads",
        Some(serde_json::json!({
            "file_name": file_name,
            "size": size,
            "content_type": "application/octet-stream",
            "part_size": valet_tests::PART_SIZE,
        })),
    )
}
