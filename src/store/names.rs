//! Mailbox names: validation, the canonical form, and where a name lives on disk.
//!
//! The store takes names as UTF-8 with `.` as the hierarchy separator. `INBOX` (any case) is
//! the Maildir root; every other name `N` is the Maildir++ folder `<root>/.<mUTF-7 of N>/`, as
//! Dovecot and Courier write it. A name is refused when it could leave the user's directory or
//! not be stored: empty, an empty level (`a..b`, a leading or trailing `.`), `/`, NUL or other
//! control characters, or more than 255 bytes as a directory name.

use std::path::{Path, PathBuf};

use crate::imap::mailbox_name;

use super::StoreError;

pub(crate) const INBOX: &str = "INBOX";
/// The hierarchy separator, on the wire and in Maildir++ directory names.
pub(crate) const SEP: char = '.';
/// Longest directory name most file systems accept.
const MAX_DIR_NAME: usize = 255;

/// The canonical form of a mailbox name: `INBOX` in upper case (also as the first level of
/// `INBOX.child`), everything else as given. Refuses names that cannot be stored.
pub(crate) fn canonical(name: &str) -> Result<String, StoreError> {
    let invalid = |why: &str| StoreError::InvalidName(format!("{name:?}: {why}"));
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    if name.contains('/') {
        return Err(invalid("'/' is not allowed"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("control characters are not allowed"));
    }
    if name.split(SEP).any(str::is_empty) {
        return Err(invalid("empty hierarchy level"));
    }
    let canonical = match name.split_once(SEP) {
        Some((first, rest)) if first.eq_ignore_ascii_case(INBOX) => format!("{INBOX}{SEP}{rest}"),
        _ => name.to_string(),
    };
    if 1 + mailbox_name::encode(&canonical).len() > MAX_DIR_NAME {
        return Err(invalid("too long"));
    }
    Ok(canonical)
}

/// [`canonical`] for CREATE, which ignores one trailing separator (RFC 3501 §6.3.3).
pub(crate) fn canonical_for_create(name: &str) -> Result<String, StoreError> {
    match name.strip_suffix(SEP) {
        Some(stripped) if !stripped.is_empty() => canonical(stripped),
        _ => canonical(name),
    }
}

/// The directory of a (canonical) mailbox under the user's Maildir root.
pub(crate) fn folder_dir(root: &Path, canonical: &str) -> PathBuf {
    if canonical == INBOX {
        root.to_path_buf()
    } else {
        root.join(format!(".{}", mailbox_name::encode(canonical)))
    }
}

/// The mailbox name of a Maildir++ directory entry (`.Name`), if it is one this store can
/// serve: valid modified UTF-7 that decodes to a valid name in canonical form. Other entries
/// (`.`, `..`, names written by tools in other encodings) are not mailboxes for us.
pub(crate) fn from_dir_entry(entry: &str) -> Option<String> {
    let encoded = entry.strip_prefix('.')?;
    if encoded.is_empty() || encoded == "." {
        return None;
    }
    let decoded = mailbox_name::decode(encoded.as_bytes()).ok()?;
    let name = canonical(&decoded).ok()?;
    if name == INBOX || mailbox_name::encode(&name) != encoded {
        return None;
    }
    Some(name)
}

/// The names above `name` in the hierarchy, outermost first: `a.b.c` gives `a`, `a.b`.
pub(crate) fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEP).map(move |(i, _)| &name[..i])
}

/// Whether `name` is `ancestor` or below it.
pub(crate) fn is_within(name: &str, ancestor: &str) -> bool {
    name == ancestor
        || name
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with(SEP))
}

/// The special-use attribute of a folder, by its name at the top level.
pub(crate) fn special_use_of(name: &str) -> Option<super::SpecialUse> {
    super::SpecialUse::ALL
        .into_iter()
        .find(|s| s.folder_name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_that_escape_or_cannot_be_stored() {
        for bad in [
            "",
            "../x",
            "a/b",
            "a..b",
            ".hidden",
            "trailing.",
            "..",
            ".",
            "nul\0byte",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(
                matches!(canonical(bad), Err(StoreError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
        let long = "x".repeat(255);
        assert!(canonical(&long).is_err());
        assert!(canonical(&"x".repeat(254)).is_ok());
        // Each non-ASCII character costs several bytes in modified UTF-7.
        assert!(canonical(&"ü".repeat(100)).is_err());
    }

    #[test]
    fn inbox_is_case_insensitive_also_as_a_parent() {
        assert_eq!(canonical("inbox").unwrap(), "INBOX");
        assert_eq!(canonical("InBoX.Sub").unwrap(), "INBOX.Sub");
        assert_eq!(canonical("INBOXES").unwrap(), "INBOXES");
        assert_eq!(canonical("Work.Projects").unwrap(), "Work.Projects");
    }

    #[test]
    fn create_ignores_one_trailing_separator() {
        assert_eq!(canonical_for_create("Foo.").unwrap(), "Foo");
        assert!(canonical_for_create("Foo..").is_err());
        assert!(canonical_for_create(".").is_err());
    }

    #[test]
    fn directories_are_maildir_plus_plus_in_modified_utf7() {
        let root = Path::new("/r");
        assert_eq!(folder_dir(root, "INBOX"), Path::new("/r"));
        assert_eq!(
            folder_dir(root, "Work.Projects"),
            Path::new("/r/.Work.Projects")
        );
        assert_eq!(folder_dir(root, "Entwürfe"), Path::new("/r/.Entw&APw-rfe"));
        assert_eq!(from_dir_entry(".Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(
            from_dir_entry(".Work.Projects").as_deref(),
            Some("Work.Projects")
        );
        assert_eq!(from_dir_entry(".INBOX.x").as_deref(), Some("INBOX.x"));
        for not_ours in [
            ".",
            "..",
            ".INBOX",
            ".inbox.x",
            ".a..b",
            "cur",
            ".Entw\u{fc}rfe",
            ".&",
        ] {
            assert_eq!(from_dir_entry(not_ours), None, "{not_ours:?}");
        }
    }

    #[test]
    fn parents_and_within() {
        assert_eq!(parents("a.b.c").collect::<Vec<_>>(), ["a", "a.b"]);
        assert_eq!(parents("a").count(), 0);
        assert!(is_within("a.b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
    }
}
