//! A folder's UIDs: hato's `hato-uidlist` file, and the import of Dovecot's `dovecot-uidlist`.
//!
//! `hato-uidlist` is text:
//!
//! ```text
//! hato-uidlist 1 V<uidvalidity> N<next uid>
//! <uid> <size> <mtime> <base name>
//! ...
//! ```
//!
//! one line per message, UIDs ascending; `size` is the file size in bytes and `mtime` its
//! modification time in Unix seconds (the internal date), so that opening a folder needs no
//! `stat` of known messages. The base name is the rest of the line (it may hold spaces).
//!
//! Writes: newly assigned UIDs are *appended* (one `write` + `fdatasync`), so a delivery into a
//! large folder does not rewrite it; removals rewrite the whole file atomically (temp file,
//! fsync, rename, fsync of the directory). The next UID is the larger of the header's `N` and
//! the last UID + 1, so it never goes back. A crash during an append can leave a last line
//! without its newline: it is ignored on reading (the message gets a new UID, it was never
//! acknowledged) and the file is rewritten before the next append.
//!
//! `dovecot-uidlist` (version 3, and the old version 1) is read when a folder has no
//! `hato-uidlist`, so that clients keep their UIDs and UIDVALIDITY when moving from Dovecot:
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//! 25017 W2481 :1276533073.M242911P3632.kurkku:2,F
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::StoreError;

pub(crate) const FILE: &str = "hato-uidlist";
pub(crate) const DOVECOT_FILE: &str = "dovecot-uidlist";
const MAGIC: &str = "hato-uidlist";
const VERSION: &str = "1";

/// One message as a UID list knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UidEntry {
    pub uid: u32,
    pub base: String,
    /// Unknown for entries imported from Dovecot.
    pub size: Option<u64>,
    pub mtime: Option<i64>,
}

/// A parsed UID list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UidList {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// Ascending by UID, no UID or base twice.
    pub entries: Vec<UidEntry>,
    /// Every line was whole and valid, so new lines may be appended. False also for an
    /// imported Dovecot list (hato's file does not exist yet).
    pub appendable: bool,
}

/// What a folder's directory holds.
pub(crate) enum Loaded {
    Hato(UidList),
    Dovecot(UidList),
    Missing,
}

pub(crate) fn load(folder: &Path) -> Result<Loaded, StoreError> {
    if let Some(text) = read_if_exists(&folder.join(FILE))? {
        let path = folder.join(FILE);
        return parse_hato(&text)
            .map(Loaded::Hato)
            .map_err(|reason| corrupt(path, reason));
    }
    if let Some(text) = read_if_exists(&folder.join(DOVECOT_FILE))? {
        let path = folder.join(DOVECOT_FILE);
        return parse_dovecot(&text)
            .map(Loaded::Dovecot)
            .map_err(|reason| corrupt(path, reason));
    }
    Ok(Loaded::Missing)
}

fn corrupt(path: PathBuf, reason: String) -> StoreError {
    StoreError::Corrupt { path, reason }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read(path) {
        // Base names are UTF-8 (others are skipped when scanning), so lossy changes nothing
        // that matters.
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Parses `V<n>` / `N<n>` header fields.
fn header_field(fields: &[&str], letter: char) -> Option<u32> {
    fields
        .iter()
        .find_map(|f| f.strip_prefix(letter))
        .and_then(|v| v.parse().ok())
}

pub(crate) fn parse_hato(text: &str) -> Result<UidList, String> {
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or_default();
    let fields: Vec<&str> = header.split(' ').collect();
    if fields.first() != Some(&MAGIC) || fields.get(1) != Some(&VERSION) {
        return Err(format!("unknown header {header:?}"));
    }
    let uid_validity = header_field(&fields, 'V')
        .filter(|&v| v != 0)
        .ok_or("header without UIDVALIDITY")?;
    let next_uid = header_field(&fields, 'N').ok_or("header without next UID")?;
    let mut appendable = text.ends_with('\n');
    let mut entries = Vec::new();
    let body: Vec<&str> = lines.collect();
    let whole = body.len().saturating_sub(1); // the last piece is after the last newline
    for (i, line) in body.iter().enumerate() {
        if line.is_empty() && i == whole {
            continue;
        }
        match parse_hato_line(line) {
            Some(entry) if i < whole => entries.push(entry),
            // A last line without its newline: a torn append.
            _ => {
                if i < whole {
                    tracing::warn!(line = %line, "hato-uidlist: skipping an unreadable line");
                }
                appendable = false;
            }
        }
    }
    Ok(finish(uid_validity, next_uid, entries, appendable))
}

fn parse_hato_line(line: &str) -> Option<UidEntry> {
    let mut parts = line.splitn(4, ' ');
    let uid: u32 = parts.next()?.parse().ok()?;
    let size: u64 = parts.next()?.parse().ok()?;
    let mtime: i64 = parts.next()?.parse().ok()?;
    let base = parts.next()?;
    if uid == 0 || base.is_empty() {
        return None;
    }
    Some(UidEntry {
        uid,
        base: base.to_string(),
        size: Some(size),
        mtime: Some(mtime),
    })
}

pub(crate) fn parse_dovecot(text: &str) -> Result<UidList, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let fields: Vec<&str> = header.split_ascii_whitespace().collect();
    let (uid_validity, next_uid) = match fields.first() {
        Some(&"3") => (header_field(&fields, 'V'), header_field(&fields, 'N')),
        Some(&"1") | Some(&"2") => (
            fields.get(1).and_then(|v| v.parse().ok()),
            fields.get(2).and_then(|v| v.parse().ok()),
        ),
        _ => return Err(format!("unsupported version in header {header:?}")),
    };
    let uid_validity = uid_validity
        .filter(|&v| v != 0)
        .ok_or("header without UIDVALIDITY")?;
    let version3 = fields.first() == Some(&"3");
    let mut entries = Vec::new();
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let (ext, file_name) = if version3 {
            // Extension fields, then ':' and the file name (which may hold spaces).
            match rest.strip_prefix(':') {
                Some(name) => ("", name),
                None => match rest.split_once(" :") {
                    Some((ext, name)) => (ext, name),
                    None => ("", rest.rsplit(' ').next().unwrap_or(rest)),
                },
            }
        } else {
            ("", rest)
        };
        let base = super::fsutil::base_of(file_name);
        if uid == 0 || base.is_empty() {
            continue;
        }
        let size = ext
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix('S'))
            .and_then(|s| s.parse().ok());
        entries.push(UidEntry {
            uid,
            base: base.to_string(),
            size,
            mtime: None,
        });
    }
    Ok(finish(uid_validity, next_uid.unwrap_or(1), entries, false))
}

/// Sorts, drops repeated UIDs and bases (the first line wins), fixes the next UID.
fn finish(
    uid_validity: u32,
    next_uid: u32,
    mut entries: Vec<UidEntry>,
    appendable: bool,
) -> UidList {
    let before = entries.len();
    entries.sort_by_key(|e| e.uid);
    entries.dedup_by_key(|e| e.uid);
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries.retain(|e| seen.insert(e.base.clone()));
    let last = entries.last().map_or(0, |e| e.uid);
    UidList {
        uid_validity,
        next_uid: next_uid.max(last.saturating_add(1)).max(1),
        appendable: appendable && entries.len() == before,
        entries,
    }
}

/// The header line of a hato-uidlist.
pub(crate) fn render_header(uid_validity: u32, next_uid: u32) -> String {
    format!("{MAGIC} {VERSION} V{uid_validity} N{next_uid}\n")
}

/// Appends the line of one message to `out`.
pub(crate) fn render_line(out: &mut String, uid: u32, size: u64, mtime: i64, base: &str) {
    let _ = writeln!(out, "{uid} {size} {mtime} {base}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hato_round_trip() {
        let mut text = render_header(1700000000, 5);
        render_line(&mut text, 1, 120, 1699999999, "1.M1P1.host,S=120");
        render_line(&mut text, 3, 7, -5, "odd base with spaces");
        let list = parse_hato(&text).unwrap();
        assert_eq!(list.uid_validity, 1700000000);
        assert_eq!(list.next_uid, 5);
        assert!(list.appendable);
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[1].base, "odd base with spaces");
        assert_eq!(list.entries[1].mtime, Some(-5));
    }

    #[test]
    fn torn_last_line_is_ignored_and_blocks_appends() {
        let mut text = render_header(7, 2);
        render_line(&mut text, 1, 1, 1, "a");
        text.push_str("2 10 17000"); // crash in the middle of an append
        let list = parse_hato(&text).unwrap();
        assert_eq!(list.entries.len(), 1);
        assert!(!list.appendable);
        assert_eq!(list.next_uid, 2);
    }

    #[test]
    fn next_uid_covers_appended_lines() {
        let mut text = render_header(7, 1);
        render_line(&mut text, 4, 1, 1, "a");
        assert_eq!(parse_hato(&text).unwrap().next_uid, 5);
    }

    #[test]
    fn bad_header_is_corrupt() {
        assert!(parse_hato("garbage\n").is_err());
        assert!(parse_hato("hato-uidlist 1 N5\n").is_err());
    }

    #[test]
    fn dovecot_version_3() {
        let text = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
                    25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
                    25017 W2481 S2400 :1276533073.M242911P3632.kurkku:2,F\n\
                    25018 G9a7c :name with space\n";
        let list = parse_dovecot(text).unwrap();
        assert_eq!(list.uid_validity, 1275660208);
        assert_eq!(list.next_uid, 25022);
        assert!(!list.appendable);
        let bases: Vec<_> = list
            .entries
            .iter()
            .map(|e| (e.uid, e.base.as_str(), e.size))
            .collect();
        assert_eq!(
            bases,
            [
                (25006, "1276528487.M364837P9451.kurkku,S=1355,W=1394", None),
                (25017, "1276533073.M242911P3632.kurkku", Some(2400)),
                (25018, "name with space", None),
            ]
        );
    }

    #[test]
    fn dovecot_version_1() {
        let list = parse_dovecot("1 1100000000 4\n1 a:2,S\n3 b\n").unwrap();
        assert_eq!(list.uid_validity, 1100000000);
        assert_eq!(list.next_uid, 4);
        assert_eq!(list.entries[0].base, "a");
        assert_eq!(list.entries[1].uid, 3);
    }
}
