//! The file-system side of the watch: watched folders (present, missing, replaced), scans,
//! the "can be opened" check, hashing for the content check, and the after-upload actions.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ledger::Scope;
use super::names::NameFilter;
use super::{AfterUpload, WatchedFolder};
use crate::error::{Error, Result};
use crate::source::FileStamp;

/// One watched folder.
#[derive(Debug)]
pub(super) struct Root {
    /// Canonical path, fixed at start (a folder that comes back is looked for here).
    pub(super) path: PathBuf,
    /// The `--to` folder.
    pub(super) to: Option<String>,
    /// Its rows in the record.
    pub(super) scope: Scope,
    /// `Some(identity)` while watched; `None` while missing.
    pub(super) watched: Option<DirId>,
    /// Why it is missing, as last reported.
    pub(super) missing: Option<String>,
}

/// What tells a folder from another one put in its place: its inode where the OS has one.
pub(super) type DirId = Option<u64>;

impl Root {
    /// The folder as given, which must be a directory now.
    pub(super) fn new(folder: &WatchedFolder) -> Result<Self> {
        let setting = |detail: String| Error::Settings {
            path: folder.path.clone(),
            detail,
        };
        let path = std::fs::canonicalize(&folder.path)
            .map_err(|e| setting(format!("cannot watch this folder: {e}")))?;
        if !path.is_dir() {
            return Err(setting("not a folder".into()));
        }
        let to = folder
            .prefix
            .as_deref()
            .map(|to| to.trim_matches('/').to_owned())
            .filter(|to| !to.is_empty());
        Ok(Self {
            scope: Scope {
                root: path.clone(),
                prefix: to.clone().unwrap_or_default(),
            },
            path,
            to,
            watched: None,
            missing: None,
        })
    }
}

/// Whether the folder is there and readable: its identity, or what is wrong.
pub(super) fn probe(path: &Path) -> std::result::Result<DirId, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the folder is gone (deleted, renamed or unmounted)".into(),
        _ => format!("cannot read the folder: {e}"),
    })?;
    if !meta.is_dir() {
        return Err("no longer a folder".into());
    }
    std::fs::read_dir(path).map_err(|e| format!("cannot read the folder: {e}"))?;
    Ok(FileStamp::of(&meta).inode)
}

/// Every candidate file under `dir` (inside `root`), with its stamp; folders the filter does
/// not enter are skipped whole, symbolic links are not followed. Unreadable sub-folders are
/// skipped and named in the second list.
pub(super) fn scan(
    dir: &Path,
    root: &Path,
    filter: &NameFilter,
) -> (Vec<(PathBuf, FileStamp)>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| {
            !entry.file_type().is_dir()
                || entry
                    .path()
                    .strip_prefix(root)
                    .is_ok_and(|rel| filter.enters_dir(rel))
        });
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if filter.refuse_file(rel).is_some() {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => files.push((entry.into_path(), FileStamp::of(&meta))),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (files, problems)
}

/// Opens the file the way the uploader will. On Windows it is opened without sharing, so a
/// file another program still has open is not ready.
pub(super) fn can_open(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        options.share_mode(0);
    }
    options.open(path).map(drop)
}

/// Hex SHA-256 of the file, streamed.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// What an after-upload action did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Done {
    Left,
    Moved(PathBuf),
    Deleted,
}

/// Does `action` to `path` (in `root`), only when the file is still the version that was sent
/// (`stamp`); otherwise, or when the move or delete fails, says why.
pub(super) fn after_upload(
    action: &AfterUpload,
    root: &Path,
    path: &Path,
    stamp: &FileStamp,
) -> std::result::Result<Done, String> {
    if *action == AfterUpload::Leave {
        return Ok(Done::Left);
    }
    let now = FileStamp::read(path).map_err(|e| e.to_string())?;
    if let Some(change) = stamp.difference(&now) {
        return Err(format!("the file changed since its upload ({change})"));
    }
    match action {
        AfterUpload::Leave => Ok(Done::Left),
        AfterUpload::Delete => std::fs::remove_file(path)
            .map(|()| Done::Deleted)
            .map_err(|e| format!("cannot delete it: {e}")),
        AfterUpload::MoveTo(dir) => {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| "not inside the watched folder".to_string())?;
            let target = free_name(&root.join(dir).join(rel));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::rename(path, &target)
                .map(|()| Done::Moved(target.clone()))
                .map_err(|e| format!("cannot move it to {}: {e}", target.display()))
        }
    }
}

/// `path`, or `name (2).ext`, `name (3).ext`… when it is taken: a move never replaces a file.
fn free_name(path: &Path) -> PathBuf {
    if std::fs::symlink_metadata(path).is_err() {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2u32..)
        .map(|n| path.with_file_name(format!("{stem} ({n}){ext}")))
        .find(|candidate| std::fs::symlink_metadata(candidate).is_err())
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_skip_partial_hidden_and_after_upload_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for rel in [
            "a.txt",
            "x/y/b.txt",
            "x/c.part",
            ".hidden",
            ".git/config",
            "done/old.txt",
        ] {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, rel).unwrap();
        }
        let filter = NameFilter::new(&[], &[], false, Some("done")).unwrap();
        let (files, problems) = scan(&root, &root, &filter);
        let mut found: Vec<_> = files
            .iter()
            .map(|(p, s)| (p.strip_prefix(&root).unwrap().to_path_buf(), s.size))
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![(PathBuf::from("a.txt"), 5), (PathBuf::from("x/y/b.txt"), 9)]
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn after_upload_moves_keep_the_tree_and_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::create_dir_all(root.join("done/x")).unwrap();
        std::fs::write(root.join("done/x/a.txt"), "older").unwrap();
        let path = root.join("x/a.txt");
        std::fs::write(&path, "new").unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        let action = AfterUpload::MoveTo("done".into());
        let done = after_upload(&action, root, &path, &stamp).unwrap();
        assert_eq!(done, Done::Moved(root.join("done/x/a (2).txt")));
        assert_eq!(
            std::fs::read(root.join("done/x/a (2).txt")).unwrap(),
            b"new"
        );
        assert_eq!(std::fs::read(root.join("done/x/a.txt")).unwrap(), b"older");

        // A file changed since its upload is left alone.
        std::fs::write(&path, "v1").unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        std::fs::write(&path, "version 2").unwrap();
        let why = after_upload(&AfterUpload::Delete, root, &path, &stamp).unwrap_err();
        assert!(why.contains("changed"), "{why}");
        assert!(path.exists());
        let stamp = FileStamp::read(&path).unwrap();
        assert_eq!(
            after_upload(&AfterUpload::Delete, root, &path, &stamp),
            Ok(Done::Deleted)
        );
        assert!(!path.exists());
    }

    #[test]
    fn missing_and_replaced_folders_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("w");
        std::fs::create_dir(&watched).unwrap();
        let first = probe(&watched).unwrap();
        std::fs::rename(&watched, dir.path().join("elsewhere")).unwrap();
        assert!(probe(&watched).unwrap_err().contains("gone"));
        std::fs::create_dir(&watched).unwrap();
        let second = probe(&watched).unwrap();
        if first.is_some() {
            assert_ne!(first, second, "another folder in its place");
        }
    }
}
