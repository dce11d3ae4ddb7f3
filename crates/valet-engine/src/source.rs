//! The file being uploaded: what it looked like when the upload started, and whether it still
//! does. A change is noticed after every part is read and again before completion; a changed
//! file is never completed ([`Error::SourceChanged`]).

use std::fs::Metadata;
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::error::{Error, Result};

/// What identifies a version of a file: its size, modification time and (where the OS has one)
/// inode. Equal stamps mean "same file, unchanged" for the purpose of resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (negative before it).
    pub mtime_ns: i64,
    /// Inode number on Unix; `None` elsewhere.
    pub inode: Option<u64>,
}

impl FileStamp {
    /// The stamp of a file from its metadata.
    pub fn of(meta: &Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .map(|t| match t.duration_since(UNIX_EPOCH) {
                Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
                Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
            })
            .unwrap_or(0);
        Self {
            size: meta.len(),
            mtime_ns,
            inode: inode(meta),
        }
    }

    /// The stamp of the file at `path` now.
    pub fn read(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|source| Error::SourceUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::of(&meta))
    }

    /// What differs between this stamp and `now`, if anything.
    pub fn difference(&self, now: &Self) -> Option<String> {
        if self.size != now.size {
            Some(format!("size {} is now {}", self.size, now.size))
        } else if self.mtime_ns != now.mtime_ns {
            Some("modification time changed".into())
        } else if self.inode.is_some() && now.inode.is_some() && self.inode != now.inode {
            Some("the file was replaced by another one".into())
        } else {
            None
        }
    }
}

/// The inode's change time (Unix `ctime`), seconds and nanoseconds; `None` elsewhere. Every
/// write and every change of the modification time moves it, and no writer can set it back,
/// so it tells a file rewritten in place with its old modification time (`touch -r`,
/// `rsync --inplace --times`). It also moves on a change of mode or owner.
pub(crate) fn change_time(meta: &Metadata) -> Option<(i64, i64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.ctime(), meta.ctime_nsec()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

#[cfg(unix)]
fn inode(meta: &Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.ino())
}

#[cfg(not(unix))]
fn inode(_meta: &Metadata) -> Option<u64> {
    None
}

/// [`Error::SourceUnreadable`] unless the file at `path` can be opened for reading now. A put
/// checks it before the upload is journaled or created, so a file its user may not read is
/// refused without a word to the service. Call it on a regular file only (see
/// [`FileStamp::read`]): opening a FIFO would wait for a writer.
pub(crate) fn check_readable(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| Error::SourceUnreadable {
            path: path.to_path_buf(),
            source,
        })
}

/// [`Error::SourceChanged`] unless the file at `path` still has stamp `expected`. A file that
/// vanished counts as changed.
pub fn check_unchanged(path: &Path, expected: &FileStamp) -> Result<()> {
    let now = match std::fs::metadata(path) {
        Ok(meta) => FileStamp::of(&meta),
        Err(e) => {
            return Err(Error::SourceChanged {
                path: path.to_path_buf(),
                reason: format!("cannot be read any more: {e}"),
            });
        }
    };
    match expected.difference(&now) {
        None => Ok(()),
        Some(reason) => Err(Error::SourceChanged {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        assert_eq!(stamp.size, 5);
        check_unchanged(&path, &stamp).unwrap();

        std::fs::write(&path, b"hello world").unwrap();
        let e = check_unchanged(&path, &stamp).unwrap_err();
        assert_eq!(e.code(), "source_changed", "{e}");

        let later = FileStamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..stamp
        };
        assert!(stamp.difference(&later).is_some(), "same size, other mtime");
        let replaced = FileStamp {
            inode: stamp.inode.map(|i| i + 1),
            ..stamp
        };
        assert_eq!(stamp.difference(&replaced).is_some(), stamp.inode.is_some());

        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            check_unchanged(&path, &stamp).unwrap_err().code(),
            "source_changed"
        );
        assert_eq!(
            FileStamp::read(dir.path()).unwrap_err().code(),
            "not_a_file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_cannot_be_opened_is_unreadable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        check_readable(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root (CI) reads it anyway; the check must then agree with a real read.
        let really = std::fs::read(&path);
        match check_readable(&path) {
            Ok(()) => assert!(really.is_ok(), "opened what cannot be read"),
            Err(e) => {
                assert!(really.is_err(), "refused what can be read: {e}");
                assert_eq!(e.code(), "source_unreadable");
                assert!(e.to_string().contains("f: "), "names the file: {e}");
            }
        }
        assert_eq!(
            check_readable(&dir.path().join("gone")).unwrap_err().code(),
            "source_unreadable"
        );
    }
}
