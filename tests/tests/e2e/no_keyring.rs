use valet_tests::PART_SIZE;
use valet_tests::cli::{Valet, parse_run};
use valet_tests::files::random_file;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;

/// A session without D-Bus, as on a headless server: no Secret Service to keep a sign-in in.
fn without_keyring(command: &mut std::process::Command) -> &mut std::process::Command {
    command
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY")
}

#[test]
fn without_a_keyring_login_says_so_and_api_tokens_still_work() {
    let w = world("nora", ServiceOptions::default());
    w.service.add_user("olga", "olga-password-123");

    let olga = Valet::signed_out(&w.service.url);
    let out = olga.login_with("olga", "olga-password-123", |command| {
        without_keyring(command);
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "sign-in error exit code: {stderr}"
    );
    assert!(
        stderr.contains("keyring"),
        "the error says there is no keyring: {stderr}"
    );
    assert!(
        stderr.contains("VALET_SERVER") && stderr.contains("VALET_TOKEN"),
        "the error names the alternative: {stderr}"
    );
    let sign_ins: Vec<_> = w
        .service
        .audit()
        .into_iter()
        .filter(|event| {
            event["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("sign_in"))
        })
        .collect();
    assert!(
        sign_ins.is_empty(),
        "the password was never sent: {sign_ins:?}"
    );

    // Scripts on the same machine use an API token from the environment instead.
    let dir = tempfile::tempdir().unwrap();
    let file = random_file(dir.path(), "headless.bin", PART_SIZE + 1, 3);
    let part_size = PART_SIZE.to_string();
    let mut put = w.valet.command(&[
        "put",
        "--json",
        "--part-size",
        &part_size,
        file.to_str().unwrap(),
    ]);
    let run = parse_run(without_keyring(&mut put).output().unwrap());
    run.verified();
}
