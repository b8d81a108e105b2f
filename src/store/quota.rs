//! Per-user quota (RFC 9208 QUOTA: the STORAGE and MESSAGE resources), tracked in Maildir++'s
//! `maildirsize` file so that usage is cheap to read and survives a migration from (or to)
//! Dovecot's `quota = maildir` or Courier.
//!
//! # Model
//!
//! One quota root per user covering all of the user's folders, named `""` (the empty string).
//! RFC 9208 leaves the name to the server and shows `""` in its examples; Dovecot's default is
//! also `""` (sites often configure `"User quota"`). Clients treat the name as opaque, so
//! nothing depends on it; the empty name has nothing to translate and reads as "the whole
//! mailbox".
//!
//! Limits ([`QuotaLimits`]) come from a [`QuotaPolicy`] installed on the
//! [`Store`](super::Store): [`ConfiguredQuota`] takes `QuotaStorage.1` (KiB) and
//! `QuotaMessages.1` from the live settings, overridden per user by a Dovecot `quota_rule`
//! in the passwd-file's extra fields ([`parse_quota_rule`]). Without a policy, or with both
//! limits 0, nothing is enforced and nothing is read.
//!
//! # `maildirsize`
//!
//! In the user's Maildir root, as Courier's maildirquota spec and Dovecot write it: the first
//! line holds the limits (`<bytes>S,<count>C`, an unlimited resource left out, `0S,0C` when
//! both are), each following line a `<bytes> <count>` change (negative for removals), appended
//! with `O_APPEND` (a short line is one `write`, which appends atomically). Usage is the sum
//! of the lines. The file is recalculated from the folders (sizes from the `,S=` of the file
//! names, a `stat` where a name has none; `cur/` and `new/` of INBOX and every `.Folder`) and
//! rewritten whole (temporary file in `tmp/`, rename) when it is missing, unreadable or
//! malformed, larger than 5,120 bytes, when its limits line differs from the limits in force
//! (a changed setting or a migrated file), or when it says the user is over a limit and is
//! older than 15 minutes (an outside program may have removed mail without telling it).
//!
//! Writers through hato update it: APPEND, COPY/MOVE in and delivery ([`UserQuota::record`]
//! after the message is in place), EXPUNGE, and the DELETE of a folder (negative lines).
//! `hato deliver` without a server checks and updates it the same way. Other writers are
//! caught by the recalculation rules above, as Maildir++ intends.
//!
//! # Enforcement and its race
//!
//! A write is refused ([`StoreError::OverQuota`], `NO [OVERQUOTA]` in IMAP, `552 5.2.2` in
//! LMTP) when usage plus the whole write (every message of a COPY) would exceed a limit; a
//! write that reaches a limit exactly is allowed. Expunge and folder deletion are never
//! refused. The check reads the file before the write and the change is appended after it,
//! without a lock around both (that would serialise a user's deliveries behind each other's
//! fsyncs), so concurrent writers near the limit may each pass and overshoot it by at most one
//! write each, as Dovecot and Courier allow too; the next write then sees the overshoot and is
//! refused.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use super::StoreError;
use super::fsutil;
use crate::auth::PasswdFile;
use crate::config::SharedSettings;

/// The file's name in the Maildir root (Maildir++).
pub const MAILDIRSIZE: &str = "maildirsize";
/// The quota root every user has (see the module doc).
pub const ROOT_NAME: &str = "";
/// A `maildirsize` larger than this is recalculated (the Maildir++ rule).
const MAX_FILE_BYTES: u64 = 5120;
/// A file that says "over quota" and is older than this is recalculated (Courier's rule).
const OVER_QUOTA_RECHECK: Duration = Duration::from_secs(15 * 60);

/// The limits of one user; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// STORAGE, in bytes (RFC 9208 reports KiB).
    pub storage: Option<u64>,
    /// MESSAGE: messages over all folders.
    pub messages: Option<u64>,
}

impl QuotaLimits {
    /// From setting-style numbers, 0 meaning unlimited: `storage_kib` in KiB.
    pub fn from_settings(storage_kib: u64, messages: u64) -> QuotaLimits {
        QuotaLimits {
            storage: (storage_kib > 0).then(|| storage_kib.saturating_mul(1024)),
            messages: (messages > 0).then_some(messages),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }

    /// The first line of `maildirsize`.
    fn header(&self) -> String {
        match (self.storage, self.messages) {
            (Some(s), Some(c)) => format!("{s}S,{c}C"),
            (Some(s), None) => format!("{s}S"),
            (None, Some(c)) => format!("{c}C"),
            (None, None) => "0S,0C".to_string(),
        }
    }

    /// Parses a `maildirsize` limits line (`0` and missing parts are unlimited).
    fn parse_header(line: &str) -> Option<QuotaLimits> {
        let mut limits = QuotaLimits::default();
        for part in line.trim().split(',').filter(|p| !p.is_empty()) {
            let limit = |digits: &str| -> Option<Option<u64>> {
                let n: u64 = digits.trim().parse().ok()?;
                Some((n > 0).then_some(n))
            };
            if let Some(digits) = part.strip_suffix('S') {
                limits.storage = limit(digits)?;
            } else if let Some(digits) = part.strip_suffix('C') {
                limits.messages = limit(digits)?;
            } else {
                return None;
            }
        }
        Some(limits)
    }

    /// Whether `usage` is over a limit.
    fn exceeded_by(&self, usage: QuotaUsage) -> bool {
        self.storage.is_some_and(|l| usage.bytes > l)
            || self.messages.is_some_and(|l| usage.messages > l)
    }
}

/// What a user stores: bytes and messages over all folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub bytes: u64,
    pub messages: u64,
}

/// A user's quota as GETQUOTA reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub limits: QuotaLimits,
    /// `None` when nothing is limited (usage is then not read).
    pub usage: Option<QuotaUsage>,
}

/// Where a user's limits come from; installed once per [`Store`](super::Store).
pub trait QuotaPolicy: Send + Sync {
    fn limits(&self, user: &str) -> QuotaLimits;
}

/// The policy of a running server: `QuotaStorage.1`/`QuotaMessages.1` from the live settings
/// (a reload applies at the next write), a user's `quota_rule` extra field in the passwd-file
/// overriding them (re-read when the file changes; one `stat` per lookup).
pub struct ConfiguredQuota {
    settings: SharedSettings,
    passwd: PasswdFile,
    cached: Mutex<Option<(FileStamp, Overrides)>>,
}

/// Identity and version of the passwd-file (device, inode, size, mtime, ctime).
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);
/// The users' `quota_rule`s, by user name.
type Overrides = Arc<HashMap<String, QuotaOverride>>;

/// A per-user `quota_rule`: each part replaces the setting when given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    /// Bytes; `Some(0)` = unlimited.
    pub storage: Option<u64>,
    pub messages: Option<u64>,
}

impl ConfiguredQuota {
    pub fn new(settings: SharedSettings, passwd: PasswdFile) -> ConfiguredQuota {
        ConfiguredQuota {
            settings,
            passwd,
            cached: Mutex::new(None),
        }
    }

    /// The users' overrides, re-read when the file changed. A file that cannot be read
    /// counts as no overrides (logged): logins fail then anyway, and delivery should not.
    fn overrides(&self) -> Overrides {
        let path = self.passwd.path();
        let stamp = match fs::metadata(path) {
            Ok(m) => (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ),
            Err(_) => return Arc::new(HashMap::new()),
        };
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, map)) = cached.as_ref()
            && *s == stamp
        {
            return map.clone();
        }
        let mut map = HashMap::new();
        match self.passwd.extra_fields() {
            Ok(users) => {
                for (user, fields) in users {
                    if let Some(rule) = override_of(&user, &fields) {
                        map.insert(user, rule);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "quota: cannot read the passwd-file"),
        }
        let map = Arc::new(map);
        *cached = Some((stamp, map.clone()));
        map
    }
}

impl QuotaPolicy for ConfiguredQuota {
    fn limits(&self, user: &str) -> QuotaLimits {
        let settings = self.settings.load();
        let base = QuotaLimits::from_settings(settings.quota_storage, settings.quota_messages);
        match self.overrides().get(user) {
            Some(o) => QuotaLimits {
                storage: o.storage.map_or(base.storage, |b| (b > 0).then_some(b)),
                messages: o.messages.map_or(base.messages, |m| (m > 0).then_some(m)),
            },
            None => base,
        }
    }
}

/// The override in a user's extra fields: Dovecot's `userdb_quota_rule=` (or `quota_rule=`,
/// the same field without the prefix). Only the `*` rule (all folders) is used; a malformed
/// rule is logged and ignored.
fn override_of(user: &str, fields: &[(String, String)]) -> Option<QuotaOverride> {
    let mut found = None;
    for (key, value) in fields {
        if key != "userdb_quota_rule" && key != "quota_rule" {
            continue;
        }
        match parse_quota_rule(value) {
            Ok(Some(rule)) => found = Some(rule),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(user, rule = value.as_str(), %reason, "quota: ignoring a quota_rule");
            }
        }
    }
    found
}

/// Parses a Dovecot quota rule, `<folder>:<limit>=<value>[:...]`: `Ok(None)` for a rule of a
/// single folder (hato has one root for all of them, so such rules do not apply). Limits:
/// `storage` (KiB without a unit, as in Dovecot), `bytes` (bytes without a unit), `messages`;
/// units `B`, `K`, `M`, `G`, `T` (powers of 1024, either case); 0 = unlimited. Relative
/// (`+10M`) and percentage values, which only make sense for folder rules, are refused.
pub fn parse_quota_rule(rule: &str) -> Result<Option<QuotaOverride>, String> {
    let mut parts = rule.split(':');
    let folder = parts.next().unwrap_or("");
    if folder != "*" {
        return Ok(None);
    }
    let mut out = QuotaOverride::default();
    for part in parts.filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("ignore") || part.eq_ignore_ascii_case("noenforcing") {
            return Err(format!("{part:?} is not supported"));
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not <limit>=<value>"))?;
        match key.to_ascii_lowercase().as_str() {
            "storage" => out.storage = Some(size(value, 1024)?),
            "bytes" => out.storage = Some(size(value, 1)?),
            "messages" => out.messages = Some(size(value, 1)?),
            _ => return Err(format!("unknown limit {key:?}")),
        }
    }
    Ok(Some(out))
}

/// A size with an optional unit; `multiplier` applies without one.
fn size(value: &str, multiplier: u64) -> Result<u64, String> {
    let value = value.trim();
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("{value:?} is not a number"));
    }
    let (number, unit) = value.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is too large"))?;
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" => multiplier,
        "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return Err(format!("unknown unit in {value:?}")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// One user's quota as the store uses it; lives in the user's shared state.
pub(crate) struct UserQuota {
    user: String,
    policy: Arc<OnceLock<Arc<dyn QuotaPolicy>>>,
    /// Serialises this process's rewrites and appends of the user's `maildirsize`, so an
    /// append never lands in a file a recalculation is about to replace.
    file: Mutex<()>,
}

impl UserQuota {
    pub(crate) fn new(user: &str, policy: Arc<OnceLock<Arc<dyn QuotaPolicy>>>) -> UserQuota {
        UserQuota {
            user: user.to_string(),
            policy,
            file: Mutex::new(()),
        }
    }

    pub(crate) fn limits(&self) -> QuotaLimits {
        self.policy
            .get()
            .map_or_else(QuotaLimits::default, |p| p.limits(&self.user))
    }

    /// Limits and (when anything is limited) usage of the Maildir at `root`.
    pub(crate) fn state(&self, root: &Path) -> Result<QuotaState, StoreError> {
        let limits = self.limits();
        if limits.is_unlimited() {
            return Ok(QuotaState {
                limits,
                usage: None,
            });
        }
        let _file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(QuotaState {
            limits,
            usage: Some(usage(root, limits)?),
        })
    }

    /// `Err(OverQuota)` when adding `bytes` in `messages` messages would exceed a limit.
    pub(crate) fn check(&self, root: &Path, bytes: u64, messages: u64) -> Result<(), StoreError> {
        let limits = self.limits();
        if limits.is_unlimited() {
            return Ok(());
        }
        let _file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        check(root, limits, bytes, messages)
    }

    /// Records a change that is already on disk. Failures are logged, never returned: the
    /// change happened, and a wrong file is put right by a later recalculation.
    pub(crate) fn record(&self, root: &Path, bytes: i64, messages: i64) {
        if bytes == 0 && messages == 0 {
            return;
        }
        let limits = self.limits();
        let _file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = record(root, limits, bytes, messages) {
            tracing::warn!(user = self.user.as_str(), error = %e, "quota: cannot update maildirsize");
        }
    }
}

/// `Err(OverQuota)` when adding `bytes` in `messages` messages to the Maildir at `root` would
/// exceed `limits`.
pub(crate) fn check(
    root: &Path,
    limits: QuotaLimits,
    bytes: u64,
    messages: u64,
) -> Result<(), StoreError> {
    if limits.is_unlimited() {
        return Ok(());
    }
    let now = usage(root, limits)?;
    let after = QuotaUsage {
        bytes: now.bytes.saturating_add(bytes),
        messages: now.messages.saturating_add(messages),
    };
    if limits.exceeded_by(after) {
        Err(StoreError::OverQuota)
    } else {
        Ok(())
    }
}

/// Appends a change to `maildirsize`. With limits and no usable file, recalculates instead
/// (the change is on disk already, so the recalculation counts it). Without limits, only an
/// existing file is kept up to date (nothing is created), so that it is still right when
/// limits come back with the same values.
pub(crate) fn record(
    root: &Path,
    limits: QuotaLimits,
    bytes: i64,
    messages: i64,
) -> Result<(), StoreError> {
    let path = root.join(MAILDIRSIZE);
    let line = format!("{bytes} {messages}\n");
    let appended = OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| {
            let len = file.metadata()?.len();
            // A file without its final newline (torn write) would join two lines.
            if len == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "empty"));
            }
            file.write_all(line.as_bytes())
        });
    match appended {
        Ok(()) => Ok(()),
        Err(_) if limits.is_unlimited() => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::InvalidData => {
            recalculate(root, limits).map(|_| ())
        }
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// The usage of the Maildir at `root` under `limits`: from `maildirsize`, recalculated when
/// the Maildir++ rules say so (see the module doc).
pub(crate) fn usage(root: &Path, limits: QuotaLimits) -> Result<QuotaUsage, StoreError> {
    let path = root.join(MAILDIRSIZE);
    let (text, meta) = match fs::read(&path).and_then(|b| Ok((b, fs::metadata(&path)?))) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return recalculate(root, limits),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return recalculate(root, limits);
    }
    match parse(&text) {
        Some((on_file, usage)) if on_file == limits => {
            let stale = meta
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > OVER_QUOTA_RECHECK);
            if limits.exceeded_by(usage) && stale {
                recalculate(root, limits)
            } else {
                Ok(usage)
            }
        }
        _ => recalculate(root, limits),
    }
}

/// Parses `maildirsize`: its limits and the sum of its lines. `None` when it is malformed
/// (not UTF-8, no limits line, a line that is not two integers, no final newline: a torn
/// append), or the sum is negative.
pub(crate) fn parse(bytes: &[u8]) -> Option<(QuotaLimits, QuotaUsage)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    let limits = QuotaLimits::parse_header(lines.next()?)?;
    let (mut total_bytes, mut total_messages) = (0i128, 0i128);
    for line in lines {
        let mut fields = line.split_ascii_whitespace();
        let b: i64 = fields.next()?.parse().ok()?;
        let c: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        total_bytes += i128::from(b);
        total_messages += i128::from(c);
    }
    Some((
        limits,
        QuotaUsage {
            bytes: u64::try_from(total_bytes).ok()?,
            messages: u64::try_from(total_messages).ok()?,
        },
    ))
}

/// Counts the Maildir at `root` (INBOX and every Maildir++ folder) and rewrites `maildirsize`
/// with `limits` and that one line. A folder changing during the count makes it count again
/// (twice at most; then the last count stands until the next recalculation).
pub(crate) fn recalculate(root: &Path, limits: QuotaLimits) -> Result<QuotaUsage, StoreError> {
    let mut total = QuotaUsage::default();
    for _attempt in 0..3 {
        let started = SystemTime::now();
        let mut changed = false;
        total = QuotaUsage::default();
        for dir in folder_dirs(root)? {
            let (usage, newest) = folder_usage(&dir)?;
            total.bytes = total.bytes.saturating_add(usage.bytes);
            total.messages = total.messages.saturating_add(usage.messages);
            changed |= newest.is_some_and(|t| t >= started);
        }
        if !changed {
            break;
        }
    }
    let text = format!("{}\n{} {}\n", limits.header(), total.bytes, total.messages);
    fsutil::ensure_dir(&root.join("tmp"))?;
    fsutil::replace_file(&root.join("tmp"), &root.join(MAILDIRSIZE), text.as_bytes())?;
    tracing::debug!(root = %root.display(), bytes = total.bytes, messages = total.messages,
        "quota: maildirsize recalculated");
    Ok(total)
}

/// INBOX (the root) and every `.Folder` directory under it.
fn folder_dirs(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut dirs = vec![root.to_path_buf()];
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(root, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() > 1 && name.starts_with('.') && name != ".." && entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// The messages in one folder's `cur/` and `new/`, and the newer modification time of the two
/// directories (to notice a change during the count).
pub(crate) fn folder_usage(dir: &Path) -> Result<(QuotaUsage, Option<SystemTime>), StoreError> {
    let mut usage = QuotaUsage::default();
    let mut newest: Option<SystemTime> = None;
    for sub in ["cur", "new"] {
        let path = dir.join(sub);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        if let Ok(t) = fs::metadata(&path).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&path, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let size = match fsutil::size_from_base(fsutil::base_of(name)) {
                Some(size) => size,
                None => match entry.metadata() {
                    Ok(m) if m.is_file() => m.len(),
                    // Gone meanwhile, or not a message file.
                    _ => continue,
                },
            };
            usage.bytes = usage.bytes.saturating_add(size);
            usage.messages += 1;
        }
    }
    Ok((usage, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        dir
    }

    fn put(root: &Path, rel: &str, content: &[u8]) {
        fs::write(root.join(rel), content).expect("write");
    }

    const LIMITS: QuotaLimits = QuotaLimits {
        storage: Some(1000),
        messages: Some(3),
    };

    #[test]
    fn headers_round_trip() {
        for limits in [
            LIMITS,
            QuotaLimits::default(),
            QuotaLimits {
                storage: Some(5),
                messages: None,
            },
            QuotaLimits {
                storage: None,
                messages: Some(7),
            },
        ] {
            assert_eq!(QuotaLimits::parse_header(&limits.header()), Some(limits));
        }
        assert_eq!(LIMITS.header(), "1000S,3C");
        assert_eq!(
            QuotaLimits::parse_header("0S"),
            Some(QuotaLimits::default())
        );
        assert_eq!(QuotaLimits::parse_header("12X"), None);
        assert_eq!(QuotaLimits::parse_header("S"), None);
        assert_eq!(QuotaLimits::parse_header("-1S"), None);
        assert_eq!(QuotaLimits::parse_header("12é"), None);
    }

    #[test]
    fn parses_lines_and_refuses_malformed_files() {
        let text = b"1000S,3C\n 300   2\n-100 -1\n50 1\n";
        assert_eq!(
            parse(text),
            Some((
                LIMITS,
                QuotaUsage {
                    bytes: 250,
                    messages: 2
                }
            ))
        );
        for bad in [
            &b""[..],
            b"1000S,3C",
            b"1000S,3C\n300 2",
            b"1000S,3C\nx 2\n",
            b"1000S,3C\n1 2 3\n",
            b"1000S,3C\n-5 0\n",
            b"\xff\n",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn recalculates_from_names_and_sizes() {
        let dir = maildir();
        let root = dir.path();
        put(root, "cur/1.M1.host,S=100:2,S", b"whatever");
        put(root, "new/2.M2.host", b"12345");
        put(root, ".Sent/cur/3.M3.host,S=40,W=42:2,", b"x");
        put(root, "tmp/4.M4.host,S=999", b"in tmp: not counted");
        let usage = recalculate(root, LIMITS).expect("recalculate");
        assert_eq!(
            usage,
            QuotaUsage {
                bytes: 145,
                messages: 3
            }
        );
        assert_eq!(
            fs::read_to_string(root.join(MAILDIRSIZE)).expect("read"),
            "1000S,3C\n145 3\n"
        );
    }

    #[test]
    fn deltas_are_appended_and_summed() {
        let dir = maildir();
        let root = dir.path();
        // No file and limits: the first record recalculates (the message is already there).
        put(root, "new/1.M1.host,S=100", b"x");
        record(root, LIMITS, 100, 1).expect("record");
        assert_eq!(usage(root, LIMITS).expect("usage").bytes, 100);
        record(root, LIMITS, 200, 1).expect("record");
        record(root, LIMITS, -50, 0).expect("record");
        assert_eq!(
            fs::read_to_string(root.join(MAILDIRSIZE)).expect("read"),
            "1000S,3C\n100 1\n200 1\n-50 0\n"
        );
        assert_eq!(
            usage(root, LIMITS).expect("usage"),
            QuotaUsage {
                bytes: 250,
                messages: 2
            }
        );
        // Without limits and without a file nothing is created.
        let other = maildir();
        record(other.path(), QuotaLimits::default(), 5, 1).expect("record");
        assert!(!other.path().join(MAILDIRSIZE).exists());
    }

    #[test]
    fn checks_limits_including_the_whole_write() {
        let dir = maildir();
        let root = dir.path();
        put(root, "cur/1.M1.host,S=600:2,", b"x");
        assert!(
            check(root, LIMITS, 400, 1).is_ok(),
            "reaching the limit is fine"
        );
        assert!(matches!(
            check(root, LIMITS, 401, 1),
            Err(StoreError::OverQuota)
        ));
        assert!(matches!(
            check(root, LIMITS, 1, 3),
            Err(StoreError::OverQuota)
        ));
        assert!(check(root, QuotaLimits::default(), u64::MAX, u64::MAX).is_ok());
    }

    #[test]
    fn recalculation_rules() {
        let dir = maildir();
        let root = dir.path();
        put(root, "cur/1.M1.host,S=10:2,", b"x");
        // Other limits on file (a changed setting, a migrated file): recalculated.
        put(root, MAILDIRSIZE, b"5S,1C\n999 9\n");
        assert_eq!(usage(root, LIMITS).expect("usage").bytes, 10);
        assert!(
            fs::read_to_string(root.join(MAILDIRSIZE))
                .expect("read")
                .starts_with("1000S,3C\n")
        );
        // Too large: recalculated into one line.
        let mut big = b"1000S,3C\n".to_vec();
        while big.len() <= MAX_FILE_BYTES as usize {
            big.extend_from_slice(b"1 0\n-1 0\n");
        }
        put(root, MAILDIRSIZE, &big);
        assert_eq!(usage(root, LIMITS).expect("usage").bytes, 10);
        assert_eq!(
            fs::read_to_string(root.join(MAILDIRSIZE)).expect("read"),
            "1000S,3C\n10 1\n"
        );
        // Malformed: recalculated.
        put(root, MAILDIRSIZE, b"1000S,3C\ngarbage\n");
        assert_eq!(usage(root, LIMITS).expect("usage").messages, 1);
        // Over quota and old: recalculated (an outside program removed mail).
        put(root, MAILDIRSIZE, b"1000S,3C\n5000 1\n");
        assert_eq!(usage(root, LIMITS).expect("usage").bytes, 5000);
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(root.join(MAILDIRSIZE))
            .and_then(|f| f.set_modified(old))
            .expect("age");
        assert_eq!(usage(root, LIMITS).expect("usage").bytes, 10);
    }

    struct Fixed(QuotaLimits);

    impl QuotaPolicy for Fixed {
        fn limits(&self, _user: &str) -> QuotaLimits {
            self.0
        }
    }

    #[test]
    fn store_writes_are_checked_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::super::Store::new(dir.path());
        store.set_quota_policy(Arc::new(Fixed(QuotaLimits {
            storage: Some(1000),
            messages: Some(4),
        })));
        let mail = store.user("carol").expect("user");
        let inbox = mail.open("INBOX").expect("inbox");
        let sent = mail.open("Sent").expect("sent");
        let a = inbox.append(&[b'a'; 300], 0, &[], None).expect("append");
        let b = inbox.append(&[b'b'; 300], 0, &[], None).expect("append");
        assert!(matches!(
            inbox.append(&[b'c'; 401], 0, &[], None),
            Err(StoreError::OverQuota)
        ));
        assert_eq!(inbox.snapshot().messages.len(), 2);
        // COPY of both (600 more bytes) is refused as a whole; nothing is left in tmp/.
        assert!(matches!(
            inbox.copy_to(&[a, b], &sent),
            Err(StoreError::OverQuota)
        ));
        assert!(sent.snapshot().messages.is_empty());
        assert_eq!(
            fs::read_dir(sent.dir().join("tmp")).expect("tmp").count(),
            0
        );
        inbox.copy_to(&[a], &sent).expect("one fits");
        let state = mail.quota().expect("quota");
        assert_eq!(
            state.usage,
            Some(QuotaUsage {
                bytes: 900,
                messages: 3
            })
        );
        // Expunge and DELETE free what they remove, and match a recalculation.
        inbox
            .set_flags(
                &[b],
                super::super::FlagMode::Add,
                super::super::Flags {
                    system: super::super::flags::DELETED,
                    keywords: 0,
                },
            )
            .expect("flag");
        inbox.expunge(None).expect("expunge");
        mail.delete("Sent").expect("delete");
        let usage = mail.quota().expect("quota").usage;
        assert_eq!(
            usage,
            Some(QuotaUsage {
                bytes: 300,
                messages: 1
            })
        );
        assert_eq!(
            usage,
            Some(recalculate(mail.root(), state.limits).expect("recalculate"))
        );
    }

    #[test]
    fn dovecot_quota_rules() {
        let rule = |s: &str| parse_quota_rule(s).expect(s);
        assert_eq!(
            rule("*:storage=1G:messages=10000"),
            Some(QuotaOverride {
                storage: Some(1 << 30),
                messages: Some(10000)
            })
        );
        assert_eq!(
            rule("*:storage=2048"),
            Some(QuotaOverride {
                storage: Some(2 << 20),
                messages: None
            })
        );
        assert_eq!(
            rule("*:bytes=300"),
            Some(QuotaOverride {
                storage: Some(300),
                messages: None
            })
        );
        assert_eq!(
            rule("*:storage=0"),
            Some(QuotaOverride {
                storage: Some(0),
                messages: None
            })
        );
        assert_eq!(rule("Trash:storage=+100M"), None);
        for bad in [
            "*:storage=lots",
            "*:storage=10X",
            "*:storage=+10M",
            "*:storage=10%",
            "*:frobs=1",
            "*:ignore",
            "*:storage=99999999999999999999T",
        ] {
            assert!(parse_quota_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_replace_settings_per_part() {
        let fields = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            override_of("u", &fields(&[("userdb_quota_rule", "*:messages=5")])),
            Some(QuotaOverride {
                storage: None,
                messages: Some(5)
            })
        );
        assert_eq!(
            override_of("u", &fields(&[("quota_rule", "*:storage=1K")])),
            Some(QuotaOverride {
                storage: Some(1024),
                messages: None
            })
        );
        assert_eq!(override_of("u", &fields(&[("mail", "/x")])), None);
        assert_eq!(
            override_of("u", &fields(&[("quota_rule", "*:storage=junk")])),
            None
        );
    }
}
