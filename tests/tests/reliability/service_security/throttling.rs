//! Failed sign-ins make the account (from that address) and the address wait, with waits that
//! grow and stop growing, and the person's right password works again once the wait is over.
//! Several client addresses come from 127.0.0.0/8, which Linux routes to loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use valet_tests::api::{RawAnswer, client_from, password_grant};
use valet_tests::cli::Valet;

use super::{ANN, BOB, Deployment, password_of};

/// Small numbers, so the test takes seconds: 3 free failures, then 3 s doubling up to 6 s;
/// 20 from one address whatever the account. A wait of 3 s leaves room for the next request
/// even on a loaded machine.
const THROTTLE: &str = "[throttle]\nfree_failures = 3\naddress_free_failures = 20\n\
                        first_delay = \"3s\"\nmax_delay = \"6s\"\n";
const MAX_DELAY_SECS: u64 = 6;

fn from(last: u8) -> reqwest::blocking::Client {
    client_from(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
}

fn status_code(answer: &RawAnswer) -> (u16, String) {
    let code = answer
        .error()
        .map(|e| e.code.as_str().to_owned())
        .unwrap_or_default();
    (answer.status, code)
}

/// `Retry-After` of a 429, in seconds.
fn retry_after(answer: &RawAnswer) -> u64 {
    assert_eq!(
        status_code(answer),
        (429, "rate_limited".into()),
        "{answer:?}"
    );
    answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a 429 says when to come back in Retry-After")
}

/// Waits out a 429's `Retry-After` (plus a little for the clocks' rounding).
fn wait_out(answer: &RawAnswer) -> u64 {
    let secs = retry_after(answer);
    std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(200));
    secs
}

#[test]
fn failed_sign_ins_wait_bounded_and_the_right_password_works_after() {
    let d = Deployment::start(THROTTLE);
    let url = d.url().to_owned();
    let attacker = from(2);
    let guess = |client: &reqwest::blocking::Client, user: &str| {
        password_grant(client, &url, user, "wrong-password")
    };
    let right =
        |client: &reqwest::blocking::Client| password_grant(client, &url, ANN, &password_of(ANN));

    // The free failures, and the first one past them, are checked and refused as wrong.
    for _ in 0..4 {
        assert_eq!(
            status_code(&guess(&attacker, ANN)),
            (401, "invalid_credentials".into())
        );
    }
    // Now ann, from that address, waits, even with the right password; nothing is checked.
    let refused = right(&attacker);
    assert!(retry_after(&refused) >= 1, "{refused:?}");
    let message = refused.error().unwrap().message;
    assert!(
        message.contains("try again in"),
        "the message says how long: {message}"
    );
    // Ann from her own address, and bob from the attacker's, are not held up.
    assert_eq!(right(&from(3)).status, 200, "ann from elsewhere signs in");
    assert_eq!(
        password_grant(&attacker, &url, BOB, &password_of(BOB)).status,
        200,
        "another account from the same address signs in"
    );

    // The waits grow, then stop growing at max_delay. Each round: guesses until one waits
    // (the first is checked once the last wait is over), then that wait waited out.
    let mut waits = Vec::new();
    for _ in 0..3 {
        let refused = loop {
            let answer = guess(&attacker, ANN);
            if answer.status == 429 {
                break answer;
            }
            assert_eq!(status_code(&answer), (401, "invalid_credentials".into()));
        };
        waits.push(wait_out(&refused));
    }
    assert!(
        waits.windows(2).all(|w| w[0] <= w[1]) && waits[0] < waits[waits.len() - 1],
        "waits grow: {waits:?}"
    );
    assert_eq!(
        waits.iter().max(),
        Some(&MAX_DELAY_SECS),
        "waits stop at max_delay: {waits:?}"
    );

    // One more failure starts a wait; the right password during it is refused, after it signs
    // in, and ends the waits of that account and address.
    assert_eq!(
        status_code(&guess(&attacker, ANN)),
        (401, "invalid_credentials".into())
    );
    let refused = right(&attacker);
    wait_out(&refused);
    let signed_in = right(&attacker);
    assert_eq!(
        signed_in.status, 200,
        "the right password works after the wait: {signed_in:?}"
    );
    assert_eq!(
        status_code(&guess(&attacker, ANN)),
        (401, "invalid_credentials".into()),
        "a success starts the count again: the next failure is free"
    );

    // Audited: each wait that started, with its scope; never a password.
    let audit = d.service.audit();
    let throttled: Vec<_> = audit
        .iter()
        .filter(|e| e["event"] == "sign_in_throttled")
        .collect();
    assert!(
        throttled.iter().any(|e| e["user"] == ANN
            && e["detail"]["scope"] == "account_and_address"
            && e["client_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.2:"))),
        "{throttled:?}"
    );
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&password_of(ANN)) && !text.contains("wrong-password"));
    println!(
        "sign-in throttle: waits {waits:?} s (bound {MAX_DELAY_SECS} s), {} waits audited",
        throttled.len()
    );
}

#[test]
fn one_address_guessing_many_accounts_or_in_parallel_waits() {
    let d = Deployment::start(THROTTLE);
    let url = d.url().to_owned();
    // Parallel guesses at one account: the attempt is charged before the password is checked,
    // so at most the free failures and one more are checked; the rest wait.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let url = url.clone();
                s.spawn(move || status_code(&password_grant(&from(5), &url, ANN, "guess")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = answers.iter().filter(|a| a.0 == 401).count();
    let waited = answers.iter().filter(|a| a.0 == 429).count();
    assert_eq!(checked + waited, 16, "{answers:?}");
    assert!(
        checked <= 4,
        "at most free + 1 guesses checked at once: {answers:?}"
    );

    // Many accounts from one address: after address_free_failures the address waits, whatever
    // account it names next; another address is not held up.
    let sprayer = from(6);
    let names = (0..).map(|i| format!("user{i}"));
    let mut first_wait = None;
    for name in names.take(30) {
        let answer = password_grant(&sprayer, &url, &name, "guess");
        if answer.status == 429 {
            first_wait = Some(answer);
            break;
        }
        assert_eq!(status_code(&answer), (401, "invalid_credentials".into()));
    }
    let first_wait = first_wait.expect("the address waits after 20 failures");
    assert!(
        first_wait
            .error()
            .unwrap()
            .message
            .contains("from this address")
    );
    let refused = password_grant(&sprayer, &url, ANN, &password_of(ANN));
    assert_eq!(
        refused.status, 429,
        "even a right password from the waiting address"
    );
    assert_eq!(
        password_grant(&from(7), &url, ANN, &password_of(ANN)).status,
        200,
        "other addresses go on"
    );
    // Refresh tokens and enrollment secrets are charged to the address too.
    let refresh = valet_tests::api::send(
        &sprayer,
        &url,
        "POST",
        "/v1/auth/token",
        None,
        Some(br#"{"grant_type":"refresh_token","refresh_token":"vrt_guess"}"#.to_vec()),
    );
    assert_eq!(refresh.status, 429, "{refresh:?}");
    assert!(
        d.service
            .audit()
            .iter()
            .any(|e| e["event"] == "sign_in_throttled" && e["detail"]["scope"] == "address"),
        "the address's wait is audited"
    );
}

#[test]
fn valet_login_names_the_wait_at_once() {
    // A wait long enough that the CLI certainly meets it, however slow the machine.
    let d = Deployment::start(
        "[throttle]\nfree_failures = 1\nfirst_delay = \"10m\"\nmax_delay = \"10m\"\n",
    );
    let url = d.url().to_owned();
    // The CLI connects from 127.0.0.1, like this client.
    for expected in [401, 401, 429] {
        let answer = password_grant(&client_from(None), &url, BOB, "wrong-password");
        assert_eq!(answer.status, expected, "{answer:?}");
    }
    let valet = Valet::signed_out(&url);
    let out = valet.login(BOB, &password_of(BOB));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rate_limited")
            && (stderr.contains("try again in 5") || stderr.contains("try again in 600 s"))
            && !stderr.contains("gave up after"),
        "valet login names the wait at once rather than retrying: {stderr}"
    );
    // From another address (as the person at their own computer) the same login works.
    let elsewhere = password_grant(&from(8), &url, BOB, &password_of(BOB));
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
}
