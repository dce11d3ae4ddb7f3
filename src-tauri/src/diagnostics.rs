//! Help → Export diagnostics: one zip with the logs, a summary of the journal and the effective
//! settings, for a person to send to their administrator. Every secret and signature is
//! redacted on the way in: the logs are already written without them, and this is the second
//! line of defence in case one slipped through.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::json;
use valet_engine::{Journal, SignIn};
use zip::write::SimpleFileOptions;

use crate::dto::{Settings, UiError};

/// The last this many bytes of each log file go in (the newest lines matter most).
const LOG_TAIL_BYTES: u64 = 8 * 1024 * 1024;

/// What goes into the archive besides the data directory's files.
pub struct Inputs<'a> {
    pub data_dir: &'a Path,
    pub logs_dir: &'a Path,
    pub settings: &'a Settings,
    /// Secrets the app knows of (the refresh token, an API token): removed wherever they
    /// appear, whatever the surrounding text looks like.
    pub secrets: Vec<String>,
}

/// Writes the archive to `dest`; its path.
pub fn export(inputs: &Inputs<'_>, dest: &Path) -> Result<PathBuf, UiError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        UiError::new("diagnostics", format!("{}: {what}: {e}", dest.display()))
    };
    let file = std::fs::File::create(dest).map_err(|e| fail("cannot create", &e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default();
    let mut add = |name: &str, text: &str| -> Result<(), UiError> {
        zip.start_file(name, options)
            .and_then(|()| {
                zip.write_all(redact(text, &inputs.secrets).as_bytes())
                    .map_err(Into::into)
            })
            .map_err(|e| fail(name, &e))
    };
    add("README.txt", README)?;
    add("config.json", &config(inputs))?;
    add("journal.txt", &journal_summary(inputs.data_dir))?;
    for log in log_files(inputs.logs_dir) {
        let name = format!(
            "logs/{}",
            log.file_name().unwrap_or_default().to_string_lossy()
        );
        add(&name, &read_tail(&log))?;
    }
    zip.finish().map_err(|e| fail("cannot finish", &e))?;
    Ok(dest.to_path_buf())
}

const README: &str = "Valet Upload diagnostics\n\
\n\
config.json  the app version, system, and effective settings\n\
journal.txt  every upload the journal knows: state, size, parts, last error\n\
logs/        the app's recent log files\n\
\n\
Tokens, passwords and URL signatures are redacted. File names and paths are included.\n";

fn config(inputs: &Inputs<'_>) -> String {
    let sign_in = SignIn::load(inputs.data_dir).ok().flatten();
    let value = json!({
        "app_version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "data_dir": inputs.data_dir,
        "signed_in": sign_in.as_ref().map(|s| json!({ "server": s.server, "user": s.user })),
        "settings": inputs.settings,
        "environment": {
            "VALET_SERVER": std::env::var("VALET_SERVER").ok(),
            "VALET_TOKEN": std::env::var_os("VALET_TOKEN").map(|_| "[set, redacted]"),
            "VALET_DATA_DIR": std::env::var("VALET_DATA_DIR").ok(),
            "VALET_LOG": std::env::var("VALET_LOG").ok(),
        },
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn journal_summary(data_dir: &Path) -> String {
    let entries = Journal::open_in(data_dir).and_then(|j| j.entries());
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => return format!("the journal could not be read: {e}\n"),
    };
    let mut out = format!("{} uploads in the journal\n\n", entries.len());
    for e in entries {
        out += &format!(
            "#{} {} {} B, {}/{} parts, updated {}{}\n    {}\n",
            e.id,
            e.state.as_str(),
            e.stamp.size,
            e.parts_done,
            e.part_count,
            e.updated_at,
            e.error_code
                .as_deref()
                .map(|c| format!(", error {c}: {}", e.error.as_deref().unwrap_or("")))
                .unwrap_or_default(),
            e.path.display(),
        );
    }
    out
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn read_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("{}: cannot read: {e}\n", path.display()))
}

/// Removes secrets from `text`: the `secrets` given, bearer tokens, token and password fields,
/// every URL's query string (pre-signed URLs and SAS tokens carry their signature there), and
/// signature parameters wherever they appear.
pub fn redact(text: &str, secrets: &[String]) -> String {
    static URL_QUERY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"(?i)(https?://[^\s"'<>?]*)\?[^\s"'<>]*"#).unwrap());
    static BEARER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+").unwrap());
    static FIELD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?i)("?(?:access_token|refresh_token|api_token|token|password|secret|enrollment_secret)"?\s*[:=]\s*"?)[^\s",}&]+"#,
        )
        .unwrap()
    });
    static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|sig|signature|skoid|sktid)=[^\s&]+").unwrap()
    });
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(secret.as_str(), "[redacted]");
    }
    let out = URL_QUERY.replace_all(&out, "$1?[redacted]");
    let out = BEARER.replace_all(&out, "$1 [redacted]");
    let out = FIELD.replace_all(&out, "${1}[redacted]");
    SIGNATURE.replace_all(&out, "$1=[redacted]").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_URL: &str = "https://store.example.com/bucket/u/file?partNumber=1&uploadId=abc&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261124%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    const SAS_URL: &str = "https://acct.blob.core.windows.net/c/b?sv=2024-05-04&sp=cw&se=2026-11-24T12%3A00%3A00Z&sig=Zm9vYmFyYmF6cXV1eHNlY3JldHNpZ25hdHVyZQ%3D%3D";
    const REFRESH: &str = "rt_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

    #[test]
    fn redaction_removes_every_kind_of_secret_and_keeps_the_rest() {
        let text = format!(
            "INFO sending part url={S3_URL}\nWARN key {SAS_URL} expired\n\
             DEBUG authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\n\
             {{\"refresh_token\":\"{REFRESH}\",\"expires_in\":900}}\n\
             password=hunter22 user=alice\n\
             stray X-Amz-Signature=deadbeefcafe1234 in text\n\
             raw token seen: {REFRESH}\n"
        );
        let out = redact(&text, &[REFRESH.to_owned()]);
        for secret in [
            "5d672d79c15b",
            "AKIDEXAMPLE",
            "Zm9vYmFy",
            "eyJhbGciOi",
            REFRESH,
            "hunter22",
            "deadbeefcafe",
        ] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        for kept in [
            "https://store.example.com/bucket/u/file?[redacted]",
            "https://acct.blob.core.windows.net/c/b?[redacted]",
            "expires_in",
            "user=alice",
            "sending part",
        ] {
            assert!(out.contains(kept), "{kept} missing from:\n{out}");
        }
    }

    #[test]
    fn the_archive_holds_logs_journal_and_config_without_secrets() {
        let data = tempfile::tempdir().unwrap();
        let logs = data.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(
            logs.join("valet-upload.log.2026-11-24"),
            format!("INFO put part {S3_URL}\nINFO token {REFRESH}\nINFO upload verified\n"),
        )
        .unwrap();
        let journal = Journal::open_in(data.path()).unwrap();
        let file = data.path().join("holiday.mov");
        std::fs::write(&file, b"movie").unwrap();
        let stamp = valet_engine::FileStamp::read(&file).unwrap();
        let new = valet_engine::NewEntry {
            path: &file,
            stamp,
            part_size: 8 << 20,
            server: "http://127.0.0.1:9/",
            prefix: None,
        };
        journal
            .begin(&new, time::OffsetDateTime::now_utc())
            .unwrap();
        let settings = Settings::default();
        let inputs = Inputs {
            data_dir: data.path(),
            logs_dir: &logs,
            settings: &settings,
            secrets: vec![REFRESH.to_owned()],
        };
        let dest = data.path().join("diag.zip");
        export(&inputs, &dest).unwrap();

        let mut archive = zip::ZipArchive::new(std::fs::File::open(&dest).unwrap()).unwrap();
        let mut names = Vec::new();
        let mut all = String::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).unwrap();
            names.push(f.name().unwrap().into_owned());
            std::io::Read::read_to_string(&mut f, &mut all).unwrap();
        }
        names.sort();
        assert_eq!(
            names,
            [
                "README.txt",
                "config.json",
                "journal.txt",
                "logs/valet-upload.log.2026-11-24"
            ]
        );
        assert!(all.contains("1 uploads in the journal"), "{all}");
        assert!(
            all.contains("holiday.mov") && all.contains("uploading"),
            "{all}"
        );
        assert!(all.contains("\"parallel_parts\"") || all.contains("\"parallelParts\""));
        assert!(all.contains("upload verified"));
        assert!(!all.contains(REFRESH), "refresh token in the archive");
        assert!(
            !all.contains("5d672d79c15b"),
            "URL signature in the archive"
        );
        assert!(!all.contains("AKIDEXAMPLE"), "credential in the archive");
    }
}
