//! The client's clock 10 minutes ahead, and 10 minutes behind, the service's and the store's,
//! with keys living 2 s and access tokens living 2 s: keys and tokens are renewed many times
//! and the upload still verifies byte-identical.
//!
//! The clock is moved with libfaketime (Debian `faketime`, preloaded into `valet` with
//! `FAKETIME=+10m` or `-10m`). Only the wall clock moves: `FAKETIME_DONT_FAKE_MONOTONIC=1` keeps
//! the monotonic clock real, as on a machine whose date is wrong (the monotonic clock counts
//! from boot and knows no date; a constant offset on it would change no interval the engine
//! measures). The engine times keys and tokens by their `expires_in` on its monotonic clock and
//! never compares the service's timestamps with its own clock, which this test holds it to.
//! Needs an OS keyring (`scripts/with-keyring.sh`): the access token is refreshed from a sign-in.

use std::path::PathBuf;
use std::process::Command;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use valet_tests::PART_SIZE;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::{random_file, sha256_file};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

/// Where Debian's `libfaketime` package puts the library (the thread-safe build: `valet` runs
/// many threads).
fn libfaketime() -> PathBuf {
    let found = ["x86_64-linux-gnu", "aarch64-linux-gnu", "."]
        .iter()
        .map(|arch| PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1")))
        .find(|path| path.exists());
    found.expect(
        "libfaketime is missing: install the Debian package faketime (scripts/setup-debian.sh)",
    )
}

/// Runs `command` with its wall clock `offset` (`+10m`, `-10m`) from the real one.
fn skew(command: &mut Command, offset: &str) {
    command
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
}

/// The time of the first log line in `stderr` (tracing's RFC 3339 timestamps, maybe dimmed
/// with terminal colour codes).
fn first_log_time(stderr: &str) -> Option<OffsetDateTime> {
    stderr.lines().find_map(|line| {
        let stamp = line.split_whitespace().next()?;
        let stamp = stamp.trim_start_matches("\x1b[2m").split('\x1b').next()?;
        OffsetDateTime::parse(stamp, &Rfc3339).ok()
    })
}

#[test]
fn keys_and_tokens_renew_with_the_client_clock_ten_minutes_ahead() {
    upload_with_the_clock_off("+10m", 600, "ahead");
}

#[test]
fn keys_and_tokens_renew_with_the_client_clock_ten_minutes_behind() {
    upload_with_the_clock_off("-10m", -600, "behind");
}

fn upload_with_the_clock_off(offset: &str, offset_secs: i64, user: &str) {
    let store = TestStore::shared_or_start(StoreKind::S3);
    let options = ServiceOptions {
        key_ttl: "2s".into(),
        extra_config: "[tokens]\naccess_ttl = \"2s\"\n".into(),
        ..ServiceOptions::default()
    };
    let service = Service::start(&store, options);
    let password = format!("{user} keeps the wrong time");
    service.add_user(user, &password);
    // Debug lines of the engine: timestamped, and one per access token refresh.
    let valet = Valet::signed_out(&service.url).log_level("valet_engine=debug");
    let login = valet.login_with(user, &password, |command| skew(command, offset));
    assert!(
        login.status.success(),
        "valet login with the clock {offset}: {}",
        String::from_utf8_lossy(&login.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let size = 6 * PART_SIZE + 777;
    let file = random_file(dir.path(), "skewed.bin", size, 10);
    let part_size = PART_SIZE.to_string();
    // 4 MiB/s, one part at a time: about 8 s, four lifetimes of a key or an access token.
    let mut put = valet.command(&[
        "put",
        "--json",
        "--part-size",
        &part_size,
        "--parallel",
        "1",
        "--bwlimit",
        "4194304",
        file.to_str().unwrap(),
    ]);
    skew(&mut put, offset);
    let started = OffsetDateTime::now_utc();
    let run = parse_run(put.output().unwrap());
    let line = run.verified();

    // The clock really was off: valet's own log lines carry the moved time.
    let logged = first_log_time(&run.stderr)
        .unwrap_or_else(|| panic!("no timestamped log line from valet:\n{}", run.stderr));
    let seen_offset = (logged - started).whole_seconds();
    assert!(
        (seen_offset - offset_secs).abs() < 60,
        "valet's clock is {offset}: it logged {logged} at {started} (off by {seen_offset} s)"
    );

    let object = line["object"].as_str().unwrap();
    assert_eq!(
        service.store().object_digest(object),
        Some((size, sha256_file(&file))),
        "byte-identical"
    );
    let upload_id = line["upload_id"].as_str().unwrap();
    let audit = service.audit();
    let renewals = audit
        .iter()
        .filter(|e| e["event"] == "key_issued" && e["upload_id"] == upload_id)
        .filter(|e| e["detail"]["renewal"] == true)
        .count();
    let refreshes = audit
        .iter()
        .filter(|e| e["event"] == "token_refreshed")
        .count();
    // A client that took the service's `expires_at` against its own clock would, ahead,
    // renew each key as soon as it arrived, and behind, send keys the store finds expired.
    let mut last_key = std::collections::HashMap::new();
    let mut renewal_gaps = Vec::new();
    for event in audit
        .iter()
        .filter(|e| e["event"] == "key_issued" && e["upload_id"] == upload_id)
    {
        let at = OffsetDateTime::parse(event["at"].as_str().unwrap(), &Rfc3339).unwrap();
        if let Some(before) = last_key.insert(event["part"].as_u64().unwrap(), at)
            && event["detail"]["renewal"] == true
        {
            renewal_gaps.push(at - before);
        }
    }
    let soonest = renewal_gaps.iter().min().copied().unwrap_or_default();
    let expired_at_store = run.stderr.matches("key expired; renewing").count();
    let refreshed_here = run.stderr.matches("access token refreshed").count();
    let reused = audit
        .iter()
        .filter(|e| e["event"] == "refresh_token_reused")
        .count();
    eprintln!(
        "measured (clock {offset}, seen {seen_offset} s): {renewals} key renewals, \
         {refreshes} access token refreshes ({refreshed_here} logged by valet) for 7 parts; \
         soonest renewal {soonest} after the key before it; {expired_at_store} keys found \
         expired by the store"
    );
    // A 2 s key is renewed once half its life is gone; 0.5 s leaves room for slow requests.
    assert!(
        soonest >= time::Duration::milliseconds(500),
        "no key renewed as soon as it came, as if already expired: {renewal_gaps:?}"
    );
    // Renewed before use, a key reaches the store alive; one late request is forgiven.
    assert!(
        expired_at_store <= 1,
        "{expired_at_store} parts were sent with keys the store found expired"
    );
    assert!(renewals >= 1, "the audit log shows key renewals");
    assert!(
        refreshes >= 2,
        "the 2 s access token was refreshed during the 8 s upload ({refreshes} refreshes)"
    );
    assert_eq!(reused, 0, "no refresh token presented twice");
}
