//! The installed package on a managed computer. `scripts/test-install.sh` builds the `.deb`
//! with the Tauri bundler, installs it with `apt-get install -y` (no questions asked), and lets
//! this test write `/etc/valet-upload/policy.json` as an administrator's tool would. The
//! installed app (`/usr/bin/valet-upload`), started as after a person's login with a fresh home
//! directory and no `VALET_*` variables, must reach the main window with no setup screen:
//! enrolled by itself, the policy's folder watched, its locked settings shown locked. A file
//! dropped into that folder arrives verified in the store, byte for byte.
//!
//! Ignored in a plain `cargo test`: it needs the package installed (root) and Xvfb.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use valet_tests::files::random_file;
use valet_tests::gui::{self, App, check_stored, write_policy};
use valet_tests::repo_root;
use valet_tests::seaweed::SeaweedFs;
use valet_tests::service::{Service, ServiceOptions};

const INSTALLED_APP: &str = "/usr/bin/valet-upload";
const POLICY_FILE: &str = "/etc/valet-upload/policy.json";
const MIB: u64 = 1024 * 1024;

/// Removes the machine-wide policy when the test ends, passed or not: every valet program on
/// this machine would follow it.
struct PolicyInPlace;

impl Drop for PolicyInPlace {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(POLICY_FILE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the .deb installed and Xvfb: run scripts/test-install.sh"]
async fn the_installed_app_follows_the_machine_policy_with_no_setup_screen() {
    use sha2::Digest as _;
    assert_eq!(
        gui::app_binary(),
        Path::new(INSTALLED_APP),
        "run by scripts/test-install.sh, which sets VALET_GUI_APP to the installed app"
    );
    // What the package put in place besides the app: the schema administrators validate
    // their policy with, the same as the repository's.
    let shipped = std::fs::read_to_string("/usr/share/valet-upload/policy.schema.json")
        .expect("the package ships the policy schema");
    let ours = std::fs::read_to_string(repo_root().join("docs/policy.schema.json")).unwrap();
    assert_eq!(shipped, ours, "the shipped schema is the current one");
    assert!(Path::new("/usr/share/valet-upload/policy.example.json").is_file());
    assert!(
        Path::new("/usr/share/applications/Valet Upload.desktop").is_file(),
        "a menu entry"
    );

    valet_tests::install_tls_provider();
    let secret = format!("ves_{}", valet_tests::random_name("install-enrollment"));
    let secret_sha256 = valet_tests::files::hex(&sha2::Sha256::digest(secret.as_bytes()));
    let store = SeaweedFs::shared_or_start();
    let service = Service::start(
        &store,
        ServiceOptions {
            extra_config: format!(
                "[[enrollment]]\nname = \"office\"\nsecret_sha256 = \"{secret_sha256}\"\n"
            ),
            ..ServiceOptions::default()
        },
    );
    let scans = tempfile::tempdir().unwrap();
    let scans = std::fs::canonicalize(scans.path()).unwrap();
    let _policy = PolicyInPlace;
    write_policy(
        Path::new(POLICY_FILE),
        &json!({
            "server": service.url,
            "sign_in": {
                "mode": "enrollment",
                "enrollment_secret": secret,
                "allow_sign_in_screen": false
            },
            "watched_folders": [{ "path": scans, "to": "scans", "settle_seconds": 1 }],
            "limits": { "parallel_parts": 3, "bandwidth": "40 MiB" },
            "notifications": false,
            "autostart": true,
            "locked": ["server", "sign_out", "watched_folders", "parallel_parts", "bandwidth", "autostart"]
        })
        .to_string(),
    );

    // A person's first login after the install: an empty home, nothing set up.
    let home = tempfile::tempdir().unwrap();
    let app = App::start_as_installed(home.path(), &[]).await;
    app.wait_main_window().await;
    assert!(
        !app.exists("#password").await && !app.exists("#server").await,
        "no sign-in or setup screen"
    );

    // Enrolled: the service lists this computer, under the policy's enrollment.
    let devices = tokio::task::block_in_place(|| service.admin_json(&["device", "list", "--json"]));
    assert_eq!(devices.len(), 1, "{devices:?}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(devices[0]["name"], host.trim(), "{devices:?}");
    assert_eq!(devices[0]["enrollment"], "office");
    let account = devices[0]["user"].as_str().unwrap().to_owned();

    // The app keeps its data where the OS says, and its device credential in the keyring,
    // not in a file.
    let data_dir = home.path().join(".local/share/valet-upload");
    assert!(data_dir.is_dir(), "the OS's data directory is used");
    for entry in walk(home.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(4).any(|w| w == b"vrt_" || w == b"vat_"),
            "{} holds a token",
            entry.display()
        );
    }

    // Started at every login, as the policy says: the desktop's autostart entry runs the
    // installed app, minimized.
    let autostart = home.path().join(".config/autostart");
    let entry = app
        .wait_for("the autostart entry", Duration::from_secs(10), async |_| {
            let dir = std::fs::read_dir(&autostart).ok()?;
            dir.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|text| text.contains("[Desktop Entry]"))
        })
        .await;
    assert!(
        entry.contains(&format!("Exec={INSTALLED_APP} --minimized"))
            || entry.contains(&format!("Exec=\"{INSTALLED_APP}\" --minimized")),
        "{entry}"
    );

    // The policy's settings, locked, and its folder, as the person sees them.
    app.click("#settings-button").await;
    app.wait_for(
        "the settings dialog",
        Duration::from_secs(10),
        async |app| {
            app.exists("dialog[open] #parallel-parts")
                .await
                .then_some(())
        },
    )
    .await;
    let start_at_login = app.find("#start-at-login").await;
    assert_eq!(
        start_at_login.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(
        start_at_login.attr("disabled").await.unwrap().is_some(),
        "locked"
    );
    for (css, shown) in [("#parallel-parts", "3"), ("#bandwidth-limit", "40")] {
        assert_eq!(app.value(css).await.as_deref(), Some(shown), "{css}");
        let input = app.find(css).await;
        assert!(
            input.attr("disabled").await.unwrap().is_some(),
            "{css} locked"
        );
        assert_eq!(
            app.text(&format!("{css}-locked")).await,
            "Set by your organisation (policy.json)"
        );
    }
    let folder = format!(
        r#"dialog[open] fieldset[data-managed="true"][data-path="{}"]"#,
        scans.display()
    );
    assert!(app.exists(&folder).await, "the policy's folder is listed");
    assert!(app.exists("#watched-locked").await && !app.exists("#watch-path").await);
    app.screenshot(&repo_root().join("docs/screenshots/installed-settings.png"))
        .await;
    app.close_dialog().await;

    // A file dropped into the watched folder arrives verified, byte for byte.
    let file = random_file(&scans, "invoice.pdf", 3 * MIB, 21);
    app.wait_state("invoice.pdf", "verified", Duration::from_secs(60))
        .await;
    let row = check_stored(&app, &service, &file).await;
    assert_eq!(
        row["objectKey"],
        format!("users/{account}/scans/invoice.pdf")
    );
    app.screenshot(&repo_root().join("docs/screenshots/installed.png"))
        .await;
    app.quit().await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}
