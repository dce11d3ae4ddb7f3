use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::random_file;
use valet_tests::seaweed::SeaweedFs;
use valet_tests::service::{Service, ServiceOptions};

/// How many `valet put` start at the same moment with one sign-in.
const AT_ONCE: usize = 6;

/// Several `valet` processes sharing one sign-in each refresh its access token from the
/// single-use refresh token in the keyring. They take turns, each presenting the token the one
/// before it stored, so the service never sees a token twice and never ends the sign-in.
///
/// Needs an OS keyring (scripts/with-keyring.sh).
#[test]
fn puts_started_at_once_share_one_sign_in() {
    let store = SeaweedFs::shared_or_start();
    let service = Service::start(&store, ServiceOptions::default());
    let password = "several at once, one sign-in";
    service.add_user("erin", password);
    let dir = tempfile::tempdir().unwrap();

    let erin = Valet::signed_out(&service.url).log_level("info");
    let out = erin.login("erin", password);
    assert!(
        out.status.success(),
        "valet login: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every process starts with no access token: each one refreshes, all at about once.
    let files: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            random_file(
                dir.path(),
                &format!("at-once-{i}.bin"),
                1000 + i as u64,
                i as u64,
            )
        })
        .collect();
    let runs: Vec<_> = files
        .iter()
        .map(|file| erin.spawn(&["put", "--json", file.to_str().unwrap()]))
        .collect();
    for (i, (child, stderr_path)) in runs.into_iter().enumerate() {
        let mut run = parse_run(child.wait_with_output().unwrap());
        run.stderr = std::fs::read_to_string(&stderr_path).unwrap();
        let line = run.verified();
        assert_eq!(line["size"], 1000 + i as u64, "put {i}: {line}");
    }

    // The sign-in is still alive: a later command refreshes from the newest token.
    let later = random_file(dir.path(), "later.bin", 77, 99);
    let run = parse_run(
        erin.command(&["put", "--json", later.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    run.verified();
}
