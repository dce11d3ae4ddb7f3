use std::process::Command;

use serde_json::Value;
use valet_tests::cli::parse_run;
use valet_tests::files::random_file;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;

/// Runs `command` with the policy file `policy` in force.
fn with_policy(mut command: Command, policy: &std::path::Path) -> valet_tests::cli::JsonRun {
    parse_run(command.env("VALET_POLICY", policy).output().unwrap())
}

#[test]
fn the_cli_follows_the_machine_policy() {
    let w = world("pia", ServiceOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    let write_policy = |hosts: &str| {
        std::fs::write(
            &policy,
            format!(
                r#"{{ "server": "{}", "limits": {{ "max_file_size": "1 MiB", "parallel_parts": 3 }},
                     "allowed_storage_hosts": [{hosts}],
                     "locked": ["server", "parallel_parts", "bandwidth", "sign_out"] }}"#,
                w.service.url
            ),
        )
        .unwrap();
    };
    write_policy(r#""storage.example.com""#);
    let small = random_file(dir.path(), "small.bin", 100 * 1024, 1);
    let big = random_file(dir.path(), "big.bin", (1 << 20) + 1, 2);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    // Locked settings given on the command line are refused, naming the policy file.
    for args in [
        vec!["put", "--json", "--parallel", "2", &path(&small)],
        vec!["put", "--json", "--bwlimit", "1MiB", &path(&small)],
        vec!["logout"],
        vec![
            "login",
            "--server",
            "https://elsewhere.example",
            "--user",
            "pia",
            "--password-stdin",
        ],
    ] {
        let run = with_policy(w.valet.command(&args), &policy);
        assert_eq!(run.code, Some(2), "{args:?} is refused: {}", run.stderr);
        assert!(
            run.stderr.contains(&policy.display().to_string()),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("not allowed"),
            "{args:?}: {}",
            run.stderr
        );
    }

    // A file over the policy's largest size is refused before anything is created.
    let run = with_policy(w.valet.command(&["put", "--json", &path(&big)]), &policy);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.lines[0]["error"]["code"], "policy_refused",
        "{:?}",
        run.lines
    );
    assert!(
        run.lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_file_size")
    );

    // A store host the policy does not list: refused, nothing verified.
    let run = with_policy(w.valet.command(&["put", "--json", &path(&small)]), &policy);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let error = &run.lines[0]["error"];
    assert_eq!(error["code"], "policy_refused", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("allowed_storage_hosts"),
        "{error}"
    );
    let states: Vec<Value> = w
        .valet
        .status()
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert!(!states.contains(&Value::from("verified")), "{states:?}");

    // The store's own host allowed: the same file goes through, with the policy's parallel parts.
    write_policy(r#""127.0.0.1", "localhost", "[::1]""#);
    let run = with_policy(w.valet.command(&["put", "--json", &path(&small)]), &policy);
    run.verified();

    // `valet policy check` names the field of a broken file, and an unreachable service.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[limits]\nparallel_parts = \"many\"\n").unwrap();
    let out = w
        .valet
        .command(&["policy", "check", broken.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken.toml") && stderr.contains("limits.parallel_parts"),
        "{stderr}"
    );

    let unreachable = dir.path().join("unreachable.json");
    let port = valet_tests::free_port();
    std::fs::write(
        &unreachable,
        format!(r#"{{ "server": "http://127.0.0.1:{port}" }}"#),
    )
    .unwrap();
    let out = w
        .valet
        .command(&["policy", "check", unreachable.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("field `server`") && stderr.contains("cannot be reached"),
        "{stderr}"
    );

    let out = with_policy_output(w.valet.command(&["policy", "check"]), &policy);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The organisation moves this machine to another service (locked): the sign-in with the
    // old one is no longer used, and the person is told where to sign in.
    let moved = dir.path().join("moved.json");
    std::fs::write(
        &moved,
        r#"{ "server": "https://valet-new.example.com", "locked": ["server"] }"#,
    )
    .unwrap();
    let run = with_policy(w.valet.command(&["put", "--json", &path(&small)]), &moved);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("now signs in to https://valet-new.example.com")
            && run.stderr.contains("moved.json"),
        "{}",
        run.stderr
    );
}

fn with_policy_output(mut command: Command, policy: &std::path::Path) -> std::process::Output {
    command.env("VALET_POLICY", policy).output().unwrap()
}
