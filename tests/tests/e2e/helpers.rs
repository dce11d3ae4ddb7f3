//! What several tests set up the same way.

use valet_tests::cli::Valet;
use valet_tests::seaweed::SeaweedFs;
use valet_tests::service::{Service, ServiceOptions};

/// A store, a service on a fresh bucket of it, and a user `name` signed in with an API token.
pub struct World {
    pub service: Service,
    pub valet: Valet,
    pub token: String,
    // Dropped last: the service talks to it until then.
    pub _store: SeaweedFs,
}

pub fn world(name: &str, options: ServiceOptions) -> World {
    let store = SeaweedFs::shared_or_start();
    let service = Service::start(&store, options);
    let token = service.add_user_with_token(name);
    let valet = Valet::with_token(&service.url, &token);
    World {
        service,
        valet,
        token,
        _store: store,
    }
}

/// The upload id of the single unfinished upload in `valet status`, and its parts done.
pub fn unfinished(valet: &Valet) -> Option<(String, u64)> {
    valet
        .status()
        .into_iter()
        .find(|line| line["state"] == "uploading" && line["upload_id"].is_string())
        .map(|line| {
            (
                line["upload_id"].as_str().unwrap().to_string(),
                line["parts_done"].as_u64().unwrap_or(0),
            )
        })
}
