//! Which names in a watched folder are uploaded: not partial or temporary files, not hidden
//! ones (unless asked), and as the include and exclude globs say.
//!
//! Partial and temporary names are the ones browsers, office suites and editors write to before
//! they rename the finished file to its real name: uploading them would send half a download,
//! or a lock file. They are never uploaded, whatever the globs say; the finished file is, once
//! it has its final name.

use std::ffi::OsStr;
use std::path::{Component, Path};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Endings of files still being written: downloads in progress (`.part` Firefox, `.crdownload`
/// Chrome, `.download` Safari, `.partial` IE/Edge legacy, `.opdownload` Opera), temporary files,
/// and editor swap files (vim `.swp`/`.swo`/`.swx`, Kate `.kate-swp`).
const PARTIAL_SUFFIXES: &[&str] = &[
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".opdownload",
    ".tmp",
    ".temp",
    ".swp",
    ".swo",
    ".swx",
    ".kate-swp",
];

/// Whether `name` (a file name, not a path) is a partial or temporary name: one ending in
/// `.part`, `.partial`, `.crdownload`, `.download`, `.opdownload`, `.tmp`, `.temp`, `.swp`,
/// `.swo`, `.swx` or `.kate-swp`, or `~$doc.docx` (Office owner files), `.~lock.doc#`
/// (LibreOffice locks), `doc~` (backup copies), `#doc#` and `.#doc` (Emacs autosave and lock
/// files). Case-insensitive.
pub fn is_partial_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    PARTIAL_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix))
        || lower.starts_with("~$")
        || lower.starts_with(".~lock")
        || lower.starts_with(".#")
        || lower.ends_with('~')
        || (lower.len() > 1 && lower.starts_with('#') && lower.ends_with('#'))
}

/// Decides which files under a watched folder are candidates for upload.
#[derive(Debug, Clone)]
pub struct NameFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    hidden: bool,
    skip_dir: Option<String>,
}

impl NameFilter {
    /// A filter from include and exclude globs (matched against the path relative to the watched
    /// folder, `/`-separated; `*` also matches `/`, so `*.pdf` matches at any depth; case-
    /// insensitive). No include globs: everything not excluded. `hidden`: also upload dotfiles
    /// and files in dot-folders. `skip_dir`: a top-level sub-folder never looked into (where
    /// uploaded files are moved to).
    ///
    /// A glob that does not parse is [`Error::Invalid`], naming it.
    pub fn new(
        include: &[String],
        exclude: &[String],
        hidden: bool,
        skip_dir: Option<&str>,
    ) -> Result<Self> {
        let include = if include.is_empty() {
            None
        } else {
            Some(glob_set(include, "--include")?)
        };
        Ok(Self {
            include,
            exclude: glob_set(exclude, "--exclude")?,
            hidden,
            skip_dir: skip_dir.map(str::to_owned),
        })
    }

    /// Whether the file at `relative` (to the watched folder) may be uploaded; `None` when yes,
    /// else why not.
    pub fn refuse_file(&self, relative: &Path) -> Option<&'static str> {
        if let Some(why) = self.refuse_parents(relative) {
            return Some(why);
        }
        let name = relative.file_name().map(OsStr::to_string_lossy)?;
        if is_partial_name(&name) {
            return Some("a partial or temporary name");
        }
        if !self.hidden && name.starts_with('.') {
            return Some("a hidden file");
        }
        let slashed = slashed(relative);
        if self.exclude.is_match(&slashed) {
            return Some("excluded");
        }
        match &self.include {
            Some(include) if !include.is_match(&slashed) => Some("not included"),
            _ => None,
        }
    }

    /// Whether the folder at `relative` is looked into at all (dot-folders are not, unless
    /// hidden files are wanted; nor is the after-upload folder, nor a folder whose own path
    /// matches an exclude glob). Files in other folders are still matched one by one.
    pub fn enters_dir(&self, relative: &Path) -> bool {
        if relative.as_os_str().is_empty() {
            return true;
        }
        if self.refuse_parents(&relative.join("x")).is_some() {
            return false;
        }
        !self.exclude.is_match(slashed(relative))
    }

    fn refuse_parents(&self, relative: &Path) -> Option<&'static str> {
        let parents: Vec<Component<'_>> = relative.parent()?.components().collect();
        for (depth, part) in parents.iter().enumerate() {
            let Component::Normal(part) = part else {
                return Some("outside the watched folder");
            };
            let part = part.to_string_lossy();
            if depth == 0 && self.skip_dir.as_deref() == Some(&*part) {
                return Some("in the after-upload folder");
            }
            if !self.hidden && part.starts_with('.') {
                return Some("in a hidden folder");
            }
        }
        None
    }
}

fn glob_set(globs: &[String], flag: &str) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(parse_glob(glob).map_err(|e| Error::Invalid(format!("{flag} {glob:?}: {e}")))?);
    }
    set.build()
        .map_err(|e| Error::Invalid(format!("{flag}: {e}")))
}

fn parse_glob(glob: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(glob)
        .case_insensitive(true)
        .literal_separator(false)
        .build()
}

/// The relative path with `/` separators on every OS, so globs read the same everywhere.
fn slashed(relative: &Path) -> String {
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> NameFilter {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        NameFilter::new(&own(include), &own(exclude), false, Some("uploaded")).unwrap()
    }

    #[test]
    fn partial_and_temporary_names_are_refused() {
        for name in [
            "movie.mkv.part",
            "setup.exe.crdownload",
            "x.CRDOWNLOAD",
            "report.pdf.download",
            "data.tmp",
            "~$budget.xlsx",
            ".~lock.budget.ods#",
            ".notes.txt.swp",
            "notes.txt.swo",
            "notes.txt~",
            "#notes.txt#",
            ".#notes.txt",
            "a.kate-swp",
        ] {
            assert!(is_partial_name(name), "{name} is partial");
            assert!(filter(&[], &[]).refuse_file(Path::new(name)).is_some());
        }
        for name in [
            "movie.mkv",
            "partial.pdf",
            "tmp",
            "#1 report.pdf",
            "a~b.txt",
            "swp",
        ] {
            assert!(!is_partial_name(name), "{name} is a final name");
        }
    }

    #[test]
    fn hidden_files_and_folders_are_refused_unless_asked() {
        let f = filter(&[], &[]);
        assert_eq!(f.refuse_file(Path::new(".bashrc")), Some("a hidden file"));
        assert_eq!(
            f.refuse_file(Path::new(".git/config")),
            Some("in a hidden folder")
        );
        assert!(!f.enters_dir(Path::new("a/.cache")));
        assert!(f.enters_dir(Path::new("a/b")));
        let hidden = NameFilter::new(&[], &[], true, None).unwrap();
        assert_eq!(hidden.refuse_file(Path::new(".git/config")), None);
        assert!(
            hidden.refuse_file(Path::new(".x.swp")).is_some(),
            "still partial"
        );
    }

    #[test]
    fn after_upload_folder_is_skipped_at_the_top_only() {
        let f = filter(&[], &[]);
        assert!(f.refuse_file(Path::new("uploaded/a.pdf")).is_some());
        assert!(!f.enters_dir(Path::new("uploaded")));
        assert_eq!(f.refuse_file(Path::new("x/uploaded/a.pdf")), None);
    }

    #[test]
    fn globs_match_the_relative_path_at_any_depth() {
        let f = filter(&["*.pdf", "scans/**"], &["*draft*", "private/**"]);
        assert_eq!(f.refuse_file(Path::new("a/b/report.PDF")), None);
        assert_eq!(f.refuse_file(Path::new("scans/2024/page.png")), None);
        assert_eq!(f.refuse_file(Path::new("photo.jpg")), Some("not included"));
        assert_eq!(f.refuse_file(Path::new("a/draft-1.pdf")), Some("excluded"));
        assert_eq!(
            f.refuse_file(Path::new("private/x.pdf")),
            Some("excluded"),
            "exclude beats include"
        );
        assert!(
            !f.enters_dir(Path::new("old-drafts")),
            "a folder matching an exclude"
        );
        assert!(f.enters_dir(Path::new("scans")));
    }

    #[test]
    fn a_bad_glob_names_itself() {
        let e = NameFilter::new(&["a[".into()], &[], false, None).unwrap_err();
        assert_eq!(e.code(), "invalid");
        assert!(e.to_string().contains("--include \"a[\""), "{e}");
    }
}
