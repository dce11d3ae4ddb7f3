//! Turning names a user typed into safe object-key segments.
//!
//! The object key is chosen by the service: `{prefix}/{user}/[{to}/]{name}`. Whatever the client
//! sends, the result stays under the user's prefix: no separators in a name, no `.` or `..`
//! segments, no control or bidi-override characters (U+202E makes `evil\u{202E}fdp.exe` display
//! as `evilexe.pdf`), no leading dots (hidden files), bounded length.

use unicode_normalization::UnicodeNormalization;

/// Longest file name kept, in bytes (common file-system limit).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest `--to` folder kept, in bytes; S3 keys are at most 1024 bytes in all.
pub const MAX_PREFIX_BYTES: usize = 512;

/// A safe file name from what the user gave, or `None` when nothing usable is left.
///
/// A path is reduced to its last segment (`a/b/c.txt` → `c.txt`), since the folder is chosen
/// with `--to`, never by the name.
pub fn sanitize_file_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let name = sanitize_segment(last)?;
    // Cutting a long name may leave a trailing space or dot (which Windows drops): trim again.
    sanitize_segment(&truncate_keeping_extension(&name, MAX_NAME_BYTES))
}

/// A safe folder path (segments joined by `/`) from `--to`, or `None` when nothing is left.
pub fn sanitize_prefix(raw: &str) -> Option<String> {
    let segments: Vec<String> = raw
        .split(['/', '\\'])
        .filter_map(sanitize_segment)
        .collect();
    if segments.is_empty() {
        return None;
    }
    let joined = segments.join("/");
    if joined.len() > MAX_PREFIX_BYTES {
        // The cut may leave a trailing dot or a segment of only `_`: sanitize what is left.
        return sanitize_prefix(truncate_at_char_boundary(&joined, MAX_PREFIX_BYTES));
    }
    Some(joined)
}

/// One path segment: NFC-normalized, unsafe characters dropped or replaced, no leading dots.
fn sanitize_segment(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.nfc() {
        if is_invisible(c) {
            continue;
        }
        if c.is_alphanumeric() || " ._-+=,@()[]~&'!#$%".contains(c) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    // Leading dots make hidden files and `..`; trailing dots and spaces are dropped by Windows.
    let trimmed = out
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    // A segment of only replacement characters says nothing; refuse it like an empty one.
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '_') {
        return None;
    }
    // Dropping a character between two combining marks can leave them out of canonical order.
    Some(trimmed.nfc().collect())
}

/// Control characters and format characters that change how a name is displayed: bidi
/// overrides and isolates, zero-width characters, the BOM.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'              // byte-order mark
            | '\u{00AD}'              // soft hyphen
        )
}

fn truncate_at_char_boundary(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Shortens `name` to `max_bytes`, keeping a short extension so the type stays visible.
fn truncate_keeping_extension(name: &str, max_bytes: usize) -> String {
    if name.len() <= max_bytes {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => {
            let stem = truncate_at_char_boundary(stem, max_bytes - ext.len() - 1);
            format!("{stem}.{ext}")
        }
        _ => truncate_at_char_boundary(name, max_bytes).to_owned(),
    }
}

/// Whether `name` is acceptable as an account name: it becomes an object-key segment, so only
/// lowercase ASCII letters, digits, `-`, `_` and `.` (not first), 1 to 64 of them.
pub fn is_valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// `text` as the stuff of an account name: lower case, anything but a-z 0-9 - _ . made `-`,
/// at most `max` characters, no `-` or `.` at either end (host names, email addresses).
pub fn user_name_part(text: &str, max: usize) -> String {
    let mapped: String = text
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    mapped.trim_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_traversal_never_leaves_the_name() {
        assert_eq!(
            sanitize_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_file_name("..\\..\\boot.ini").as_deref(),
            Some("boot.ini")
        );
        assert_eq!(sanitize_file_name(".."), None);
        assert_eq!(sanitize_file_name("a/.."), None);
        assert_eq!(sanitize_file_name("/"), None);
        assert_eq!(
            sanitize_prefix("../../other-user/x").as_deref(),
            Some("other-user/x")
        );
        assert_eq!(sanitize_prefix("a/./b//c/..").as_deref(), Some("a/b/c"));
        assert_eq!(sanitize_prefix("../.."), None);
    }

    #[test]
    fn dotfiles_lose_their_leading_dots() {
        assert_eq!(sanitize_file_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(
            sanitize_file_name("...hidden.txt").as_deref(),
            Some("hidden.txt")
        );
        assert_eq!(
            sanitize_file_name("report.pdf.").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(sanitize_file_name("..."), None);
    }

    #[test]
    fn unicode_tricks_are_removed() {
        // Right-to-left override: would display as "invoicefdp.exe" reversed.
        assert_eq!(
            sanitize_file_name("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoicefdp.exe")
        );
        assert_eq!(
            sanitize_file_name("a\u{200B}b\u{FEFF}.txt").as_deref(),
            Some("ab.txt")
        );
        assert_eq!(sanitize_file_name("\u{202E}\u{200B}"), None);
        // Decomposed é (e + combining acute) becomes the single precomposed character.
        assert_eq!(
            sanitize_file_name("cafe\u{301}.txt").as_deref(),
            Some("caf\u{e9}.txt")
        );
        // Without the zero-width space, shadda and fatha are put back in canonical order.
        let marks = sanitize_prefix("a\u{651}\u{200B}\u{64E}").unwrap();
        assert_eq!(marks, "a\u{64E}\u{651}");
        assert_eq!(sanitize_prefix(&marks), Some(marks));
        // Fullwidth solidus is not a separator but is not kept either.
        assert_eq!(sanitize_file_name("a\u{FF0F}b").as_deref(), Some("a_b"));
    }

    #[test]
    fn control_characters_and_empty_names_are_refused() {
        assert_eq!(
            sanitize_file_name("a\nb\r\0.txt").as_deref(),
            Some("ab.txt")
        );
        assert_eq!(sanitize_file_name(""), None);
        assert_eq!(sanitize_file_name("   "), None);
        assert_eq!(sanitize_file_name("\u{7}"), None);
        assert_eq!(sanitize_file_name("***"), None);
        assert_eq!(sanitize_file_name("a*b?.txt").as_deref(), Some("a_b_.txt"));
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.tar.gz", "é".repeat(300));
        let name = sanitize_file_name(&long).unwrap();
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with(".gz"), "{name}");
        // Cut without an extension, right after a space: the space goes too.
        let spaced = format!("{} b", "a".repeat(MAX_NAME_BYTES - 1));
        let name = sanitize_file_name(&spaced).unwrap();
        assert_eq!(name, "a".repeat(MAX_NAME_BYTES - 1));
        assert_eq!(sanitize_file_name(&name), Some(name));
        let prefix = sanitize_prefix(&"abc/".repeat(300)).unwrap();
        assert!(prefix.len() <= MAX_PREFIX_BYTES);
        assert!(!prefix.ends_with('/'));
        // Cut right after `_`: a segment of only `_` is refused, as it is uncut.
        let long = "a".repeat(MAX_PREFIX_BYTES - 2);
        let prefix = sanitize_prefix(&format!("{long}/_x")).unwrap();
        assert_eq!(prefix, long);
        assert_eq!(sanitize_prefix(&prefix), Some(prefix));
    }

    #[test]
    fn user_names_are_plain() {
        assert!(is_valid_user_name("dev"));
        assert!(is_valid_user_name("alice.b-2_x"));
        assert!(!is_valid_user_name(""));
        assert!(!is_valid_user_name("Alice"));
        assert!(!is_valid_user_name("a/b"));
        assert!(!is_valid_user_name(".."));
        assert!(!is_valid_user_name(&"a".repeat(65)));
    }
}
