//! `valet-service`: the command line over the library (see docs/CONTRACTS.md).

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;
use valet_service::config::Config;
use valet_service::db::{Db, devices, tokens};
use valet_service::{audit, auth, dev, ready_line, server};

#[derive(Parser)]
#[command(
    name = "valet-service",
    version,
    about = "The valet service of Valet Upload"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally: embedded store, SQLite, account `dev`.
    Dev {
        /// Where the database, the store's data and the dev password live.
        #[arg(long, default_value = "./valet-dev")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run with a configuration file.
    Serve {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Managed devices enrolled with an enrollment secret.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Enrollment secrets for managed devices.
    #[command(subcommand)]
    Enrollment(EnrollmentCommand),
    /// Print the audit log.
    Audit {
        /// Only the entries of this upload.
        #[arg(long)]
        upload: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account.
    Add {
        /// Account name (a-z 0-9 - _ .).
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue an API token; prints the token alone on stdout.
    Issue {
        /// The account it acts for.
        name: String,
        /// A note on what it is for.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        place: Place,
    },
    /// List API tokens (never the tokens themselves).
    List {
        /// Only this account's.
        name: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Revoke an API token by id.
    Revoke {
        /// The id shown by `token list`.
        id: String,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List enrolled devices: id, account, state, enrolled at, name.
    List {
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Revoke a device: every token of its sign-in stops working at once, and its uploads
    /// stop with a message saying so.
    Revoke {
        /// The id shown by `device list`.
        id: String,
        #[command(flatten)]
        place: Place,
    },
    /// Forget a revoked device, letting the computer enroll again (a revoked device's
    /// enrollments are refused until then).
    Forget {
        /// The id shown by `device list`.
        id: String,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Subcommand)]
enum EnrollmentCommand {
    /// Make a new enrollment secret: prints the secret (for the policy file's
    /// `sign_in.enrollment_secret`) on stdout and the `[[enrollment]]` entry for the service's
    /// config on stderr.
    NewSecret {
        /// The entry's name; device accounts are NAME-HOSTNAME.
        name: String,
    },
}

/// Which database: a dev directory or a configured service's.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Place {
    /// A `dev` data directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A `serve` configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Place {
    async fn open(&self) -> Result<Db> {
        let path = match (&self.data, &self.config) {
            (Some(dir), _) => dir.join("valet.db"),
            (None, Some(file)) => Config::load(file)?.database_path(),
            (None, None) => bail!("give --data DIR or --config FILE"),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Db::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `VALET_LOG` is an env-filter (`debug`, `valet_service=trace`).
fn init_logging() {
    let directives = std::env::var("VALET_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = valet_service::log_filter(&directives);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dev { data, listen } => run_dev(&data, listen).await,
        Command::Serve { config } => run_serve(&config).await,
        Command::User(UserCommand::Add {
            name,
            password_stdin,
            place,
        }) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                rpassword::prompt_password(format!("Password for {name}: "))
                    .context("reading the password")?
            };
            let db = place.open().await?;
            let result = auth::add_user(&db, &name, &password, OffsetDateTime::now_utc()).await;
            db.close().await;
            result?;
            eprintln!("added user {name}");
            Ok(())
        }
        Command::Token(TokenCommand::Issue { name, label, place }) => {
            let db = place.open().await?;
            let result =
                auth::issue_api_token(&db, &name, label.as_deref(), OffsetDateTime::now_utc())
                    .await;
            db.close().await;
            let (id, token) = result?;
            println!("{token}");
            eprintln!("issued API token {id} for {name}; it is shown only once");
            Ok(())
        }
        Command::Token(TokenCommand::List { name, json, place }) => {
            let db = place.open().await?;
            let result = tokens::list_api(&db, name.as_deref()).await;
            db.close().await;
            let mut out = std::io::stdout().lock();
            for t in result? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&t)?)?;
                } else {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.user,
                        state,
                        rfc3339(t.created_at),
                        t.label.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { id, place }) => {
            let db = place.open().await?;
            let result = tokens::revoke(&db, &id, OffsetDateTime::now_utc()).await;
            db.close().await;
            if !result? {
                bail!("no active API token with id {id}");
            }
            eprintln!("revoked {id}");
            Ok(())
        }
        Command::Device(DeviceCommand::List { json, place }) => {
            let db = place.open().await?;
            let result = devices::list(&db).await;
            db.close().await;
            let mut out = std::io::stdout().lock();
            for d in result? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&d)?)?;
                } else {
                    let state = if d.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        d.id,
                        d.user,
                        state,
                        rfc3339(d.enrolled_at),
                        d.name
                    )?;
                }
            }
            Ok(())
        }
        Command::Device(DeviceCommand::Revoke { id, place }) => {
            let db = place.open().await?;
            let now = OffsetDateTime::now_utc();
            let result = devices::revoke(&db, &id, now).await;
            if matches!(result, Ok(true)) {
                let mut entry = audit::Entry::new(audit::Event::DeviceRevoked, now);
                entry.detail = Some(serde_json::json!({ "device": id }));
                audit::record_or_warn(&db, &entry).await;
            }
            db.close().await;
            if !result? {
                bail!("no active device with id {id}");
            }
            eprintln!("revoked device {id}");
            Ok(())
        }
        Command::Device(DeviceCommand::Forget { id, place }) => {
            let db = place.open().await?;
            let result = devices::forget(&db, &id).await;
            db.close().await;
            if !result? {
                bail!("no revoked device with id {id}");
            }
            eprintln!("forgot device {id}; it may enroll again");
            Ok(())
        }
        Command::Enrollment(EnrollmentCommand::NewSecret { name }) => {
            anyhow::ensure!(
                valet_service::names::is_valid_user_name(&name) && name.len() <= 32,
                "invalid name {name:?}: use 1-32 of a-z 0-9 - _ ."
            );
            let secret = format!("ves_{}", auth::random_text(32));
            println!("{secret}");
            eprintln!(
                "add to the service's config:\n\n[[enrollment]]\nname = \"{name}\"\nsecret_sha256 = \"{}\"\n\nand put the secret in the policy file's sign_in.enrollment_secret",
                auth::token_hash(&secret)
            );
            Ok(())
        }
        Command::Audit {
            upload,
            json,
            place,
        } => {
            let db = place.open().await?;
            let result = audit::list(&db, upload.as_deref()).await;
            db.close().await;
            let mut out = std::io::stdout().lock();
            for line in result? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                } else {
                    writeln!(out, "{}", human_audit_line(&line))?;
                }
            }
            Ok(())
        }
    }
}

async fn run_dev(data: &Path, listen: SocketAddr) -> Result<()> {
    let dev = dev::start(data, listen)
        .await
        .context("starting the dev service")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "dev account: {}", dev.user)?;
        writeln!(out, "dev password: {}", dev.password)?;
        writeln!(out, "{}", ready_line(dev.url()))?;
        out.flush()?;
    }
    let stopper = dev.running.stopper();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stopper.send(true);
    });
    let DevServer { running, store, .. } = dev;
    let result = running.wait().await;
    drop(store);
    result.context("serving")
}

use valet_service::dev::DevServer;

async fn run_serve(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let store = valet_service::store::Store::from_config(&config)?;
    let running = server::start_with_store(config, store)
        .await
        .context("starting the service")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ready_line(&running.url))?;
        out.flush()?;
    }
    let stopper = running.stopper();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stopper.send(true);
    });
    running.wait().await.context("serving")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn human_audit_line(line: &audit::Line) -> String {
    let mut s = format!("{} {}", rfc3339(line.at), line.event);
    let fields = [
        ("user", line.user.clone()),
        ("upload", line.upload_id.clone()),
        ("part", line.part.map(|p| p.to_string())),
        ("expires", line.expires_at.map(rfc3339)),
        ("client", line.client_addr.clone()),
        ("detail", line.detail.as_ref().map(|d| d.to_string())),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            s.push_str(&format!(" {name}={value}"));
        }
    }
    s
}
