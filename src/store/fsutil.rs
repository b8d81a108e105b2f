//! File-system helpers of the store: Maildir unique names, message file names, directory
//! creation, durable (fsynced) writes and atomic replacement of small files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::StoreError;

/// Mode of directories the store creates (mail is private to its user).
const DIR_MODE: u32 = 0o700;
/// Mode of files the store creates.
const FILE_MODE: u32 = 0o600;

/// A name no other delivery on any host can pick, in the style Dovecot writes:
/// `<secs>.M<micros>P<pid>Q<counter>.<hostname>`.
pub(crate) fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hostname()
    )
}

/// The host name as it may appear in a Maildir file name: `/`, `:` and `,` written as octal
/// escapes (`\057`, `\072`, `\054`) as the Maildir specification does for the first two.
fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let mut host = String::new();
        for c in raw.trim().chars() {
            match c {
                '/' => host.push_str("\\057"),
                ':' => host.push_str("\\072"),
                ',' => host.push_str("\\054"),
                c if c.is_ascii_graphic() => host.push(c),
                _ => host.push('_'),
            }
        }
        if host.is_empty() {
            host.push_str("localhost");
        }
        host
    })
}

/// The base of a Maildir file name: everything before the `:` that starts the info part.
pub(crate) fn base_of(file_name: &str) -> &str {
    file_name
        .split_once(':')
        .map_or(file_name, |(base, _)| base)
}

/// The flag letters of a file name in `cur/` (after `:2,`), empty when there are none.
pub(crate) fn letters_of(file_name: &str) -> &str {
    file_name
        .split_once(':')
        .and_then(|(_, info)| info.strip_prefix("2,"))
        .unwrap_or("")
}

/// The size Dovecot records in a base name (`,S=<bytes>`), if any.
pub(crate) fn size_from_base(base: &str) -> Option<u64> {
    number_after(base, ",S=")
}

/// The virtual size (lines counted with CRLF ends, the RFC822.SIZE) Dovecot records in a base
/// name (`,W=<bytes>`), if any.
pub(crate) fn virtual_size_from_base(base: &str) -> Option<u64> {
    number_after(base, ",W=")
}

fn number_after(base: &str, marker: &str) -> Option<u64> {
    let start = base.find(marker)? + marker.len();
    let digits = base[start..].bytes().take_while(u8::is_ascii_digit).count();
    base[start..start + digits].parse().ok()
}

/// The size of `content` with every bare LF counted as CRLF, as IMAP sees a message.
pub(crate) fn virtual_size(content: &[u8]) -> u64 {
    let bare_lf = content
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || content[i - 1] != b'\r'))
        .count();
    (content.len() + bare_lf) as u64
}

/// Seconds since the epoch of a time (negative before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The time `secs` seconds after the epoch.
pub(crate) fn from_unix_secs(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Creates a directory (private mode); an existing one is fine.
pub(crate) fn ensure_dir(path: &Path) -> Result<(), StoreError> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Creates a directory and its missing parents (private mode).
pub(crate) fn ensure_dir_all(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .recursive(true)
        .create(path)
        .map_err(|e| StoreError::io(path, e))
}

/// Makes the entries of a directory (creations, renames, removals) durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

/// Writes `data` to a new file `path` and makes it durable (not its directory entry).
/// `mtime`, when given, becomes the file's modification time.
pub(crate) fn write_new_file(
    path: &Path,
    data: &[u8],
    mtime: Option<SystemTime>,
) -> Result<(), StoreError> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        file.write_all(data)?;
        if let Some(t) = mtime {
            file.set_modified(t)?;
        }
        file.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(path);
        StoreError::io(path, e)
    })
}

/// Replaces the file `target` with `data` atomically and durably: write a temporary file in
/// `tmp_dir` (same file system), fsync it, rename it over `target`, fsync `target`'s directory.
/// A crash leaves either the old or the new content, never a mix.
pub(crate) fn replace_file(tmp_dir: &Path, target: &Path, data: &[u8]) -> Result<(), StoreError> {
    ensure_dir(tmp_dir)?;
    let tmp = tmp_dir.join(unique_name());
    write_new_file(&tmp, data, None)?;
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(target, e));
    }
    match target.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

/// Name prefix of a deleted folder waiting for its removal in the root's `tmp/` (DELETE first
/// renames the folder there, then removes it).
pub(crate) const TRASH_PREFIX: &str = "hato-deleted.";

/// Removes files in a Maildir `tmp/` last modified more than 36 hours ago (what the Maildir
/// specification allows readers to do), leftovers of deliveries that crashed, and deleted
/// folders whose removal a crash interrupted.
pub(crate) fn clean_tmp(tmp_dir: &Path) {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    let Some(limit) = SystemTime::now().checked_sub(Duration::from_secs(36 * 3600)) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir()
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(TRASH_PREFIX)
        {
            let _ = fs::remove_dir_all(entry.path());
        } else if meta.is_file() && meta.modified().is_ok_and(|t| t < limit) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_file_names() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(
                !n.contains('/') && !n.contains(':') && !n.contains(','),
                "{n}"
            );
        }
    }

    #[test]
    fn file_name_parts() {
        let name = "1276528487.M364837P9451.kurkku,S=1355,W=1394:2,FSa";
        assert_eq!(
            base_of(name),
            "1276528487.M364837P9451.kurkku,S=1355,W=1394"
        );
        assert_eq!(letters_of(name), "FSa");
        assert_eq!(size_from_base(base_of(name)), Some(1355));
        assert_eq!(size_from_base("123.M1P2.host"), None);
        assert_eq!(letters_of("123.M1P2.host"), "");
        assert_eq!(letters_of("123.M1P2.host:1,xyz"), "");
        assert_eq!(base_of("123.M1P2.host"), "123.M1P2.host");
    }

    #[test]
    fn unix_time_round_trip() {
        for secs in [0, 1, 1_700_000_000, -86_400] {
            assert_eq!(unix_secs(from_unix_secs(secs)), secs);
        }
    }

    #[test]
    fn replace_file_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        replace_file(&dir.path().join("tmp"), &target, b"one").unwrap();
        replace_file(&dir.path().join("tmp"), &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
