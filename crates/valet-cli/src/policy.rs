//! The machine's policy as the CLI applies it: its values are the defaults, its locked
//! settings are refused (exit 2), its rules and proxy apply to every upload.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use valet_engine::policy::{self, Format, LivePolicy, Policy, PolicyState, Setting, UploadRules};
use valet_engine::{
    Engine, OsKeyring, RateLimit, SSO_TIMEOUT, SecretString, Session, SsoParams, SsoSignIn,
};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force (JSON), where it came from, and any problem with it.
    Show,
    /// Check a policy file (default: the one in force): every field, and that its service
    /// answers. Exit 0 when it is good, 2 with the file and field named when not.
    Check {
        /// The file to check (.json or .toml)
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Reads the policy in force; a broken one is reported on stderr (the last good one applies).
pub fn read(data_dir: &Path) -> PolicyState {
    let state = LivePolicy::read(policy::system_sources(), data_dir);
    if let Some(error) = &state.error {
        eprintln!("valet: warning: {error}");
        if state.policy.is_some() {
            eprintln!("valet: using the last good policy");
        }
    }
    if let Some(policy) = &state.policy {
        valet_engine::set_proxy(policy.proxy.as_deref().and_then(|p| p.parse().ok()));
    }
    state
}

/// Refuses a command-line option for a locked setting.
pub fn refuse_locked(state: &PolicyState, setting: Setting, option: &str) -> anyhow::Result<()> {
    if state.is_locked(setting) {
        anyhow::bail!(
            "{option} is not allowed: `{setting}` is locked by the policy {} (ask your administrator)",
            state.origin.as_deref().unwrap_or("in force")
        );
    }
    Ok(())
}

/// The parts sent at once: `--parallel` unless locked, else the policy's, else 4.
pub fn parallel(state: &PolicyState, asked: Option<u16>) -> anyhow::Result<usize> {
    if asked.is_some() {
        refuse_locked(state, Setting::ParallelParts, "--parallel")?;
    }
    let from_policy = state.policy.as_ref().and_then(|p| p.limits.parallel_parts);
    Ok(asked
        .map(usize::from)
        .or(from_policy.map(|n| n as usize))
        .unwrap_or(4))
}

/// The bandwidth limit: `--bwlimit` unless locked (0: none), else the policy's.
pub fn bandwidth(
    state: &PolicyState,
    asked: Option<u64>,
) -> anyhow::Result<Option<Arc<RateLimit>>> {
    if asked.is_some() {
        refuse_locked(state, Setting::Bandwidth, "--bwlimit")?;
    }
    let from_policy = state
        .policy
        .as_ref()
        .and_then(|p| p.limits.bandwidth)
        .map(|b| b.0);
    Ok(asked
        .or(from_policy)
        .filter(|&rate| rate > 0)
        .map(|rate| Arc::new(RateLimit::new(rate))))
}

/// Puts the policy's rules (largest file, storage hosts) on `engine`.
pub fn apply(state: &PolicyState, engine: &Engine) {
    engine.set_rules(UploadRules::from_policy(state.policy.as_deref()));
}

/// `valet enroll`: the policy's server and enrollment secret, this computer's name.
pub async fn enroll(
    state: &PolicyState,
    data_dir: &Path,
    device_name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let Some(policy) = &state.policy else {
        anyhow::bail!("no policy on this machine: enrollment needs one (see docs/POLICY.md)");
    };
    let (Some(server), Some(secret)) = (&policy.server, &policy.sign_in.enrollment_secret) else {
        anyhow::bail!(
            "the policy {} has no server or sign_in.enrollment_secret to enroll with",
            state.origin.as_deref().unwrap_or("in force")
        );
    };
    let name = device_name.unwrap_or_else(policy::device_name);
    let session = Session::enroll(
        server,
        SecretString::from(secret.clone()),
        &name,
        Arc::new(OsKeyring),
        data_dir,
    )
    .await?;
    eprintln!(
        "enrolled {name} as {} at {}",
        session.user().unwrap_or_default(),
        valet_engine::urls::redact(session.server())
    );
    Ok(ExitCode::SUCCESS)
}

/// A password sign-in is refused when the policy signs people in with single sign-on.
pub fn refuse_password_under_sso(state: &PolicyState) -> anyhow::Result<()> {
    if state
        .policy
        .as_ref()
        .is_some_and(|p| p.sign_in.mode == policy::SignInMode::Sso)
    {
        anyhow::bail!(
            "the policy {} signs in with single sign-on: run `valet login --sso`",
            state.origin.as_deref().unwrap_or("in force")
        );
    }
    Ok(())
}

/// `valet login --sso`: the provider from the policy (else from the service), the address
/// printed and opened in the browser, then the wait for it to come back.
pub async fn sso_login(
    state: &PolicyState,
    data_dir: &Path,
    server: Option<String>,
    no_browser: bool,
) -> anyhow::Result<ExitCode> {
    let policy = state.policy.as_deref();
    let Some(server) = server.or_else(|| policy.and_then(|p| p.server.clone())) else {
        anyhow::bail!("--server is needed: no policy names the service");
    };
    let params = match policy.and_then(|p| p.sign_in.sso.as_ref()) {
        Some(sso) => SsoParams::from(sso),
        None => SsoParams::from_service(&server).await?,
    };
    let sign_in = SsoSignIn::start(&server, &params, Arc::new(OsKeyring), data_dir).await?;
    let url = sign_in.authorization_url().to_string();
    eprintln!("Open this address to sign in: {url}");
    if !no_browser && let Err(e) = open::that_detached(&url) {
        eprintln!("valet: could not open a browser ({e}); open the address yourself");
    }
    eprintln!(
        "waiting for the browser (up to {} min)…",
        SSO_TIMEOUT.as_secs() / 60
    );
    let session = sign_in.finish(SSO_TIMEOUT).await?;
    eprintln!(
        "signed in as {} at {}",
        session.user().unwrap_or_default(),
        valet_engine::urls::redact(session.server())
    );
    Ok(ExitCode::SUCCESS)
}

/// `valet policy show|check`.
pub async fn command(command: PolicyCommand, state: &PolicyState) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Show => {
            match (&state.policy, &state.origin) {
                (Some(policy), Some(origin)) => {
                    eprintln!("policy in force: {origin}");
                    println!("{}", serde_json::to_string_pretty(&redacted(policy))?);
                }
                _ => eprintln!("no policy: the settings are the user's"),
            }
            Ok(ExitCode::from(
                u8::from(state.error.is_some()) * crate::EXIT_SETUP,
            ))
        }
        PolicyCommand::Check { file } => {
            let (policy, origin) = match file {
                Some(file) => {
                    let origin = file.display().to_string();
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| anyhow::anyhow!("policy {origin}: cannot read it: {e}"))?;
                    let format = if file.extension().is_some_and(|e| e == "toml") {
                        Format::Toml
                    } else {
                        Format::Json
                    };
                    (Policy::parse(&text, format, &origin)?, origin)
                }
                None => {
                    if let Some(error) = &state.error {
                        anyhow::bail!("{error}");
                    }
                    match (&state.policy, &state.origin) {
                        (Some(policy), Some(origin)) => ((**policy).clone(), origin.clone()),
                        _ => {
                            eprintln!("no policy on this machine");
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                }
            };
            policy.probe_server(&origin).await?;
            eprintln!("policy {origin}: good");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The policy without its enrollment secret, for printing.
fn redacted(policy: &Policy) -> Policy {
    let mut shown = policy.clone();
    if shown.sign_in.enrollment_secret.is_some() {
        shown.sign_in.enrollment_secret = Some("[redacted]".into());
    }
    shown
}
