//! The reliability and security suite: faults the client and the service must survive, input
//! they must refuse, and secrets they must keep. Every test here backs a row of
//! docs/RELIABILITY.md, which says how each fault is produced, how often it was tried and what
//! came of it. Real processes throughout: `valet`, `valet-service serve`, SeaweedFS, and a
//! fault-injecting TCP proxy (`valet_tests::faults`) between them.
//!
//! Run with `scripts/test.sh` (README), or alone with `scripts/test-reliability.sh`.

#[path = "../e2e/helpers.rs"]
#[allow(dead_code)]
mod helpers;

/// The client refuses plain HTTP off loopback, key URLs outside the store's hosts and
/// redirects, and keeps its tokens in the keyring only.
mod client_security;
/// The client's clock 10 minutes ahead or behind: keys are still renewed in time.
mod clock_skew;
/// `valet put` killed with SIGKILL at random moments, 20 times, during one 500 MiB upload.
mod crash_loop;
/// A journal on a full disk; a source file deleted, truncated, replaced or unreadable.
mod disk_faults;
/// A key writes one object, one part, for minutes, and nothing else.
mod key_scope;
/// Many clients at once against one service: every answer right, p99 reported, memory flat.
mod load;
/// The network between the client and the store, and between the client and the service:
/// resets mid-part, latency, a bandwidth cap, a 30 s blackhole, a slow drip.
mod network_faults;
/// The valet service killed and restarted in the middle of an upload.
mod service_restart;
/// The service's API: every endpoint against no, expired and revoked tokens and other users'
/// uploads; login throttling; hostile names, sizes and types; headers; audit log integrity.
mod service_security;
