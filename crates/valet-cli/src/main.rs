//! `valet`: sign in to a valet service and upload files straight to its object store.
//!
//! Glue only: arguments, sign-in choice, output lines, exit codes. Every real job is in
//! `valet-engine`. Exit status: 0 all verified; 1 some file failed; 2 usage, config or sign-in
//! error (see docs/CONTRACTS.md).

mod policy;
mod progress;
mod size;
mod watch;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use valet_engine::policy::{PolicyState, Setting};
use valet_engine::{
    Engine, Events, ExposeSecret, Journal, OsKeyring, PutOptions, SecretString, Session,
    UploadReport,
};

use crate::progress::Bars;

#[derive(Parser)]
#[command(
    name = "valet",
    version,
    about = "Upload large files straight to object storage with keys from a valet service"
)]
struct Cli {
    /// Where the journal and sign-in settings live [default: the OS data dir, `valet-upload`]
    #[arg(long, global = true, env = "VALET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in with a password; the refresh token is kept in the OS keyring.
    ///
    /// Scripts and machines without a keyring set VALET_SERVER and VALET_TOKEN (an API token)
    /// instead.
    ///
    /// With --sso, sign in through the organisation's single sign-on in the browser instead:
    /// the address to open is printed on stderr, and opened unless --no-browser.
    Login {
        /// The valet service, e.g. https://valet.example.com (http:// only on loopback);
        /// with --sso, the policy's service when not given
        #[arg(long, value_name = "URL", required_unless_present = "sso")]
        server: Option<String>,
        /// Account name
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "sso",
            conflicts_with = "sso"
        )]
        user: Option<String>,
        /// Read the password from the first line of stdin instead of prompting
        #[arg(long, conflicts_with = "sso")]
        password_stdin: bool,
        /// Sign in through the organisation's OpenID Connect provider (the policy's
        /// sign_in.sso, else the one the service names)
        #[arg(long)]
        sso: bool,
        /// With --sso: only print the address to open, do not open a browser
        #[arg(long, requires = "sso")]
        no_browser: bool,
    },
    /// Enroll this computer with the organisation's enrollment secret from the machine's
    /// policy (sign_in.mode = "enrollment"): it gets an account of its own, kept like a sign-in.
    Enroll {
        /// The name the service records [default: this computer's host name]
        #[arg(long, value_name = "NAME")]
        device_name: Option<String>,
    },
    /// Sign out: revoke the sign-in on the service and forget it here.
    Logout,
    /// Upload files; an unfinished upload of the same unchanged file is resumed.
    ///
    /// PATH must be files: directories are refused (pass their files, e.g. DIR/*). Each file
    /// gets one result line; the exit status is 1 when any file failed.
    Put {
        /// Files to upload
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Folder under your prefix in the store
        #[arg(long, value_name = "PREFIX")]
        to: Option<String>,
        #[command(flatten)]
        transfer: Transfer,
        /// Preferred part size, e.g. 8MiB (K/M/G are powers of 1024). The service raises it
        /// when the file needs larger parts to fit its store, and says so on stderr
        #[arg(long, value_name = "SIZE", value_parser = size::parse_bytes)]
        part_size: Option<u64>,
    },
    /// List journaled uploads: uploading (unfinished), verified or failed.
    Status {
        /// One JSON object a line
        #[arg(long)]
        json: bool,
    },
    /// Finish every unfinished upload in the journal (after a crash, a reboot, a lost network).
    Resume {
        #[command(flatten)]
        transfer: Transfer,
    },
    /// Watch folders: upload each file dropped into them once it is complete, once.
    ///
    /// A file is uploaded when it has stayed unchanged for the settle time and its writer has
    /// closed it; partial and temporary names (*.part, *.crdownload, *.tmp, ~$*, swap files)
    /// and dotfiles are not. What was sent is remembered in watch.sqlite in the data dir: a
    /// file renamed or moved inside the folder is not sent again, an edited one is. Runs until
    /// Ctrl-C or SIGTERM.
    Watch(watch::WatchArgs),
    /// The machine's policy (set by an administrator): show it, or check a policy file.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

#[derive(Args)]
struct Transfer {
    /// One JSON object a line per file on stdout; no progress bars
    #[arg(long)]
    json: bool,
    /// Parts sent at once, as memory allows: part buffers stay within 256 MiB (or two parts,
    /// for parts over 128 MiB), so fewer are sent at once with large parts [default: 4, or the
    /// policy's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: Option<u16>,
    /// Bandwidth limit for all parts together, bytes per second (e.g. 4194304, 4MiB; 0: none)
    /// [default: none, or the policy's]
    #[arg(long, value_name = "RATE", value_parser = size::parse_bytes)]
    bwlimit: Option<u64>,
}

/// Exit status for usage, config and sign-in errors.
pub(crate) const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("valet: cannot start: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("valet: {}", describe(&e));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// An error and its causes on one line, each cause once: the engine's messages already
/// include their source, which anyhow's chain would print a second time.
fn describe(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

/// `VALET_LOG` (an env-filter such as `debug`) to stderr; default `warn`. HTTP internals are
/// capped at `debug` unless named in the filter: our own logs already say what was sent where.
fn init_logging() {
    let filter = std::env::var("VALET_LOG").unwrap_or_else(|_| "warn".into());
    let mut directives = filter.clone();
    for noisy in ["hyper", "hyper_util", "h2", "reqwest", "rustls"] {
        if !filter.contains(noisy) {
            directives.push_str(&format!(",{noisy}=info"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Errors from here on are setup errors (exit 2) unless a command returns its own code.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => valet_engine::default_data_dir()?,
    };
    let policy = policy::read(&data_dir);
    match cli.command {
        Command::Login {
            server,
            user,
            password_stdin,
            sso,
            no_browser,
        } => {
            if let Some(locked) = policy
                .policy
                .as_ref()
                .filter(|p| p.is_locked(Setting::Server))
                && let Some(server) = &server
            {
                let asked = valet_engine::urls::parse_server(server)?;
                anyhow::ensure!(
                    Some(&asked) == locked.server_url().as_ref(),
                    "--server {} is not allowed: the policy {} locks the service to {}",
                    valet_engine::urls::redact(&asked),
                    policy.origin.as_deref().unwrap_or("in force"),
                    locked.server.as_deref().unwrap_or_default()
                );
            }
            if sso {
                return policy::sso_login(&policy, &data_dir, server, no_browser).await;
            }
            policy::refuse_password_under_sso(&policy)?;
            let (Some(server), Some(user)) = (server, user) else {
                anyhow::bail!("--server and --user are needed (or --sso)");
            };
            login(&data_dir, &server, &user, password_stdin).await
        }
        Command::Logout => {
            policy::refuse_locked(&policy, Setting::SignOut, "valet logout")?;
            logout(&data_dir).await
        }
        Command::Policy(command) => policy::command(command, &policy).await,
        Command::Enroll { device_name } => policy::enroll(&policy, &data_dir, device_name).await,
        Command::Status { json } => status(&data_dir, json),
        Command::Put {
            paths,
            to,
            transfer,
            part_size,
        } => {
            for path in &paths {
                check_path(path)?;
            }
            check_distinct_names(&paths, to.as_deref())?;
            let mut options = transfer.options(&policy)?;
            options.prefix = to;
            if let Some(part_size) = part_size {
                options.part_size = part_size;
            }
            let engine = engine(&data_dir, &policy).await?;
            let bars = Bars::new(transfer.json);
            let (events, rx) = Events::channel();
            let drawing = tokio::spawn(bars.clone().follow(rx));
            let mut failed = false;
            for path in &paths {
                let result = engine.put(path, &options, &events).await;
                failed |= result.is_err();
                bars.println(&result_line(path, &result, transfer.json));
            }
            drop(events);
            let _ = drawing.await;
            Ok(exit_code(failed))
        }
        Command::Watch(args) => watch::watch(&data_dir, args, &policy).await,
        Command::Resume { transfer } => {
            let options = transfer.options(&policy)?;
            let engine = engine(&data_dir, &policy).await?;
            let bars = Bars::new(transfer.json);
            let (events, rx) = Events::channel();
            let drawing = tokio::spawn(bars.clone().follow(rx));
            let results = engine.resume_all(&options, &events).await?;
            drop(events);
            let _ = drawing.await;
            if results.is_empty() && !transfer.json {
                eprintln!("nothing to resume");
            }
            let mut failed = false;
            for (path, result) in &results {
                failed |= result.is_err();
                bars.println(&result_line(path, result, transfer.json));
            }
            Ok(exit_code(failed))
        }
    }
}

impl Transfer {
    /// The options asked for, within the policy: a locked setting given is refused.
    fn options(&self, policy: &PolicyState) -> anyhow::Result<PutOptions> {
        Ok(PutOptions {
            parallel: policy::parallel(policy, self.parallel)?,
            limit: policy::bandwidth(policy, self.bwlimit)?,
            ..PutOptions::default()
        })
    }
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Paths are checked before anything is sent: a typo or a directory is a usage error.
fn check_path(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    anyhow::ensure!(
        !meta.is_dir(),
        "{} is a directory; pass its files instead (e.g. {}/*)",
        path.display(),
        path.display()
    );
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
    Ok(())
}

/// Two files with the same name in one `put` would land on the same object key (the key is
/// the `--to` folder and the file name, as the engine sends it: from the resolved path, so a
/// symlink counts under its target's name), the second silently replacing the first: refused
/// before anything is sent, naming both paths.
fn check_distinct_names(paths: &[PathBuf], to: Option<&str>) -> anyhow::Result<()> {
    let mut seen: std::collections::HashMap<std::ffi::OsString, &Path> =
        std::collections::HashMap::new();
    for path in paths {
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let Some(name) = resolved.file_name().or_else(|| path.file_name()) else {
            continue;
        };
        if let Some(first) = seen.insert(name.to_owned(), path) {
            let folder = match to {
                Some(to) => format!(" in --to {to}"),
                None => String::new(),
            };
            anyhow::bail!(
                "{} and {} would both be stored as {}{folder}, the second replacing the first; \
                 upload them in separate commands with different --to folders",
                first.display(),
                path.display(),
                name.to_string_lossy()
            );
        }
    }
    Ok(())
}

/// The session: `VALET_SERVER` + `VALET_TOKEN` when set, else the saved sign-in; refused when
/// the policy locks the service to another one.
fn session(data_dir: &Path, policy: &PolicyState) -> anyhow::Result<Session> {
    let server = std::env::var("VALET_SERVER").ok().filter(|s| !s.is_empty());
    let token = std::env::var("VALET_TOKEN").ok().filter(|s| !s.is_empty());
    let session = match (server, token) {
        (Some(server), Some(token)) => Session::with_api_token(&server, SecretString::from(token))?,
        (None, Some(_)) => anyhow::bail!("VALET_TOKEN is set but VALET_SERVER is not"),
        _ => Session::saved(data_dir, Arc::new(OsKeyring))?,
    };
    if let Some(why) = policy.refuses_server(session.server().as_str()) {
        anyhow::bail!(
            "{why}: sign in there (`valet enroll`, `valet login --sso` or `valet login`)"
        );
    }
    Ok(session)
}

/// A working session (checked with the service) and the journal.
async fn engine(data_dir: &Path, policy: &PolicyState) -> anyhow::Result<Engine> {
    let session = session(data_dir, policy)?;
    session.me().await.context("signing in")?;
    let journal = Journal::open_in(data_dir)?;
    let engine = Engine::new(session, journal);
    policy::apply(policy, &engine);
    Ok(engine)
}

fn result_line(path: &Path, result: &valet_engine::Result<UploadReport>, json: bool) -> String {
    let shown = path.display().to_string();
    match (result, json) {
        (Ok(r), true) => json!({
            "path": shown,
            "object": r.object_key,
            "upload_id": r.upload_id,
            "size": r.size,
            "sha256": r.sha256,
            "verified": true,
            "bytes_sent": r.bytes_sent,
            "bytes_already_stored": r.bytes_already_stored,
        })
        .to_string(),
        (Err(e), true) => json!({
            "path": shown,
            "verified": false,
            "error": { "code": e.code(), "message": e.to_string() },
        })
        .to_string(),
        (Ok(r), false) => format!(
            "verified  {shown} -> {} ({} bytes, sha256 {}{})",
            r.object_key,
            r.size,
            r.sha256,
            if r.bytes_already_stored > 0 {
                format!(", {} bytes were already stored", r.bytes_already_stored)
            } else {
                String::new()
            }
        ),
        (Err(e), false) => format!("FAILED    {shown}: {e} [{}]", e.code()),
    }
}

async fn login(
    data_dir: &Path,
    server: &str,
    user: &str,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
        line.clear();
        SecretString::from(trimmed)
    } else {
        let prompt = format!(
            "Password for {user} at {}: ",
            valet_engine::urls::redact_str(server)
        );
        SecretString::from(rpassword::prompt_password(prompt).context("reading the password")?)
    };
    anyhow::ensure!(!password.expose_secret().is_empty(), "empty password");
    let session = Session::login(server, user, password, Arc::new(OsKeyring), data_dir).await?;
    eprintln!(
        "signed in as {user} at {}",
        valet_engine::urls::redact(session.server())
    );
    Ok(ExitCode::SUCCESS)
}

async fn logout(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let session = match Session::saved(data_dir, Arc::new(OsKeyring)) {
        Ok(session) => session,
        Err(valet_engine::Error::NotSignedIn) => {
            eprintln!("not signed in");
            if std::env::var_os("VALET_TOKEN").is_some() {
                eprintln!("(VALET_TOKEN is set: unset it to stop using the API token)");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    match session.logout(data_dir).await? {
        None => eprintln!("signed out"),
        Some(e) => eprintln!(
            "signed out here; the service could not revoke the sign-in ({e}); its tokens expire on their own"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn status(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let journal = Journal::open_in(data_dir)?;
    let entries = journal.entries()?;
    if entries.is_empty() && !json {
        eprintln!("no uploads in the journal ({})", journal.path().display());
    }
    for e in entries {
        let line = if json {
            json!({
                "path": e.path.display().to_string(),
                "upload_id": e.upload_id,
                "object": e.object_key,
                "size": e.stamp.size,
                "parts_done": e.parts_done,
                "part_count": e.part_count,
                "state": e.state.as_str(),
                "error_code": e.error_code,
                "error": e.error,
            })
            .to_string()
        } else {
            let mut line = format!(
                "{:<9} {:>5}/{:<5} {:>14} bytes  {}",
                e.state.as_str(),
                e.parts_done,
                e.part_count,
                e.stamp.size,
                e.path.display()
            );
            if let Some(object) = &e.object_key {
                line.push_str(&format!(" -> {object}"));
            }
            if let (Some(code), Some(message)) = (&e.error_code, &e.error) {
                line.push_str(&format!("\n          last error [{code}]: {message}"));
            }
            line
        };
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_each_cause_once() {
        let engine = valet_engine::Error::SourceUnreadable {
            path: "/data/a.bin".into(),
            source: std::io::Error::other("Input/output error"),
        };
        let line = describe(&anyhow::Error::new(engine).context("reading a.bin"));
        assert_eq!(line, "reading a.bin: /data/a.bin: Input/output error");
    }

    #[test]
    fn two_files_with_one_name_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("report.pdf"), sub).unwrap();
        }
        std::fs::write(dir.path().join("a").join("other.pdf"), "o").unwrap();
        let first = dir.path().join("a").join("report.pdf");
        let second = dir.path().join("b").join("report.pdf");
        let other = dir.path().join("a").join("other.pdf");

        let e = check_distinct_names(&[first.clone(), other.clone(), second.clone()], Some("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&first.display().to_string()), "{e}");
        assert!(e.contains(&second.display().to_string()), "{e}");
        assert!(e.contains("report.pdf in --to x"), "{e}");
        assert!(
            check_distinct_names(&[first.clone(), first.clone()], None).is_err(),
            "the same file twice"
        );
        check_distinct_names(&[first, other], None).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_counts_under_its_targets_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data.bin");
        std::fs::write(&target, "d").unwrap();
        std::fs::create_dir(dir.path().join("links")).unwrap();
        let link = dir.path().join("links").join("alias.bin");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::fs::write(dir.path().join("links").join("data.bin"), "other").unwrap();
        let e = check_distinct_names(&[link, dir.path().join("links").join("data.bin")], None)
            .unwrap_err();
        assert!(e.to_string().contains("alias.bin"), "{e}");
    }
}
