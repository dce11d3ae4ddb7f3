//! Logs: to a daily file in the data directory (kept a week, read by Export diagnostics) and
//! to stderr. The engine never logs a token or a URL's query; the filter is `VALET_LOG`
//! (default `info`).

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log files kept.
const KEPT_DAYS: usize = 7;
/// Log file names start with this.
pub const LOG_PREFIX: &str = "valet-upload.log";

/// Where the logs go under `data_dir`.
pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Starts logging; keep the guard alive (it flushes the file on drop). Without a writable log
/// folder the app still runs, logging to stderr only.
pub fn init(data_dir: &Path) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_env("VALET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let dir = logs_dir(data_dir);
    let _reported_below = std::fs::create_dir_all(&dir);
    let file = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_PREFIX)
        .max_log_files(KEPT_DAYS)
        .build(&dir);
    match file {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer);
            let _already = tracing_subscriber::registry()
                .with(filter)
                .with(stderr)
                .with(file)
                .try_init();
            Some(guard)
        }
        Err(e) => {
            let _already = tracing_subscriber::registry()
                .with(filter)
                .with(stderr)
                .try_init();
            tracing::warn!(error = %e, "cannot write log files; logging to stderr only");
            None
        }
    }
}
