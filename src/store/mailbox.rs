//! One folder, shared by every session that has it open: its index of messages (UIDs, flags,
//! sizes, dates; never bodies), the scan that brings the index in line with the Maildir on disk,
//! and the writes (append, flag changes, expunge, copy).
//!
//! Concurrency: the index is an immutable [`Index`] behind an `ArcSwap`; readers take a snapshot
//! without locking. Everything that changes the folder (including a scan) holds the folder's
//! mutex, so UIDs are assigned by one writer at a time, and publishes a new snapshot when done.
//!
//! Messages are files named `<base>:2,<flags>` in `cur/` (or `<base>` in `new/`); they are stored
//! exactly as received, so `size` is the RFC822.SIZE of a message received with CRLF line ends.
//!
//! Mod-sequences (CONDSTORE/QRESYNC): every publish that changes messages gives them the next
//! mod-sequence and logs it in `hato-modseq` before the index is published; see [`super::modseq`]
//! for the model, the file and why a crash cannot make a number go back or repeat.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::StoreError;
use super::flags::{self, FlagMode, Flags};
use super::fsutil::{self, base_of, letters_of};
use super::keywords::{self, Keywords};
use super::modseq::{self, Incomplete, Limits, LogFile, MAX_MODSEQ, RESERVE, Vanished};
use super::uidlist::{self, Loaded};
use super::user::UserShared;

/// Placeholders for what a Dovecot UID list does not record; a scan fills them in (with a
/// `stat`) before the index is published, so published entries never hold them.
const UNKNOWN_SIZE: u64 = u64::MAX;
const UNKNOWN_DATE: i64 = i64::MIN;
/// The mod-sequence of a message not yet given one; the publish that makes it visible gives it
/// one, so published entries never hold it.
const UNASSIGNED_MODSEQ: u64 = 0;

/// A folder's messages at one moment. Immutable; a change publishes a new one.
#[derive(Debug, Clone)]
pub struct Index {
    pub uid_validity: u32,
    /// The UID the next message will get; never decreases.
    pub uid_next: u32,
    /// Grows with every published change of this folder (while it stays open).
    pub generation: u64,
    /// Ascending by UID.
    pub messages: Vec<MessageMeta>,
    /// The keyword names the `keywords` bits of [`MessageMeta::flags`] refer to.
    pub keywords: Arc<Keywords>,
    /// When this index was published (the change it carries was made), for the latency of
    /// pushing changes to IDLE sessions.
    pub published: Instant,
    /// What the recent publishes changed, so a session a few generations behind can catch up
    /// in proportion to the changes instead of comparing whole indexes.
    pub changes: Arc<ChangeLog>,
    /// HIGHESTMODSEQ (RFC 7162): at least the mod-sequence of every message and of every
    /// remembered expunge; ≥ 1. It never decreases, across restarts and crashes too. It only
    /// moves when `generation` moves (both change at publishes), but unlike the generation it
    /// persists, and publishes that change no message leave it alone.
    pub highest_modseq: u64,
    /// The remembered expunges, for VANISHED; shared between indexes (see [`Vanished`]).
    pub vanished: Arc<Vanished>,
}

/// One change to a folder, as sessions report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new message (APPEND, COPY/MOVE in, delivery).
    Added(u32),
    /// The message's flags changed.
    Flags(u32),
    /// The message was removed.
    Expunged(u32),
}

/// The bounded ring of recent changes carried by each [`Index`].
#[derive(Debug, Clone, Default)]
pub struct ChangeLog {
    /// Generations up to and including this one are not covered: entries were dropped to keep
    /// the log bounded, or a publish (an outside writer found by a re-read) did not say what
    /// changed. A session that last saw such a generation compares whole indexes instead.
    pub base: u64,
    /// `(generation, change)`, oldest first.
    pub entries: Vec<(u64, Change)>,
}

/// Changes kept per folder. Publishing copies the log, so this bounds that copy too.
const CHANGE_LOG: usize = 1024;

impl ChangeLog {
    /// The changes after generation `seen`, if the log still covers them all.
    pub fn since(&self, seen: u64) -> Option<&[(u64, Change)]> {
        if seen < self.base {
            return None;
        }
        let start = self.entries.partition_point(|&(g, _)| g <= seen);
        Some(&self.entries[start..])
    }

    /// The log after a publish of `generation` with `changes` (`None`: not known).
    fn next(&self, generation: u64, changes: Option<Vec<Change>>) -> ChangeLog {
        let Some(changes) = changes else {
            return ChangeLog {
                base: generation,
                entries: Vec::new(),
            };
        };
        let total = self.entries.len() + changes.len();
        let drop = total.saturating_sub(CHANGE_LOG);
        let mut base = self.base;
        if drop > 0 {
            base = self.entries.get(drop - 1).map_or(generation, |&(g, _)| g);
        }
        let mut entries: Vec<(u64, Change)> = self.entries.iter().skip(drop).copied().collect();
        if changes.len() > CHANGE_LOG {
            return ChangeLog {
                base: generation,
                entries: Vec::new(),
            };
        }
        entries.extend(changes.into_iter().map(|c| (generation, c)));
        ChangeLog { base, entries }
    }
}

impl Index {
    /// Where the message with `uid` is in [`Index::messages`] (binary search).
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn total_size(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }

    /// Messages without `\Seen`.
    pub fn unseen(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| !m.flags.has(flags::SEEN))
            .count()
    }

    /// Messages whose mod-sequence is above `modseq` (added or changed after it), ascending by
    /// UID: FETCH CHANGEDSINCE and the flag part of a QRESYNC SELECT. One pass over the index.
    ///
    /// A `modseq` above [`Index::highest_modseq`] comes from another history (a server the
    /// folder was migrated from); the caller should then use 0, which yields every message.
    pub fn changed_since(&self, modseq: u64) -> impl Iterator<Item = &MessageMeta> + '_ {
        self.messages.iter().filter(move |m| m.modseq > modseq)
    }

    /// UIDs expunged after `modseq`, ascending (VANISHED (EARLIER) of a QRESYNC SELECT or a
    /// UID FETCH ... (CHANGEDSINCE m VANISHED)). They may include UIDs the client never saw
    /// (added and expunged after `modseq`), which RFC 7162 allows; the caller narrows them to the
    /// client's UID range.
    ///
    /// `Err(Incomplete)` when some expunges after `modseq` may be forgotten (`modseq` is below
    /// the floor of [`Index::vanished`]) or `modseq` is above HIGHESTMODSEQ (another history).
    /// The caller then reports [`Index::absent_uids`] of the client's range instead.
    pub fn vanished_since(&self, modseq: u64) -> Result<Vec<u32>, Incomplete> {
        if modseq > self.highest_modseq {
            return Err(Incomplete {
                floor: self.vanished.floor(),
            });
        }
        self.vanished.since(modseq)
    }

    /// The UIDs from `first` to `last` (inclusive) that are not in the folder, as ascending
    /// inclusive ranges: what VANISHED reports when [`Index::vanished_since`] is `Incomplete`
    /// (expunged UIDs plus UIDs that never existed, which RFC 7162 allows). Work in proportion
    /// to the messages in the range, never to the size of the range.
    pub fn absent_uids(&self, first: u32, last: u32) -> Vec<(u32, u32)> {
        let first = first.max(1);
        let mut out = Vec::new();
        if first > last {
            return out;
        }
        let start = self.messages.partition_point(|m| m.uid < first);
        let mut next = first;
        for m in &self.messages[start..] {
            if m.uid > last {
                break;
            }
            if m.uid > next {
                out.push((next, m.uid - 1));
            }
            match m.uid.checked_add(1) {
                Some(n) => next = n,
                None => return out, // the largest UID is present: nothing above it
            }
        }
        if next <= last {
            out.push((next, last));
        }
        out
    }
}

/// One message in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    /// Keyword bits only for keywords of [`Index::keywords`].
    pub flags: Flags,
    /// Size of the file in bytes (Dovecot's `,S=<size>` in the name when present), which is
    /// the RFC822.SIZE of a message stored as received with CRLF line ends.
    pub size: u64,
    /// The internal date: the file's modification time (as Dovecot uses it), Unix seconds.
    pub internal_date: i64,
    /// The file is in `new/` (not yet seen by any reader), else in `cur/`.
    pub in_new: bool,
    /// The file's current name in `new/` or `cur/`.
    pub file_name: Arc<str>,
    /// The mod-sequence of the publish that last added or changed this message (RFC 7162
    /// MODSEQ); ≥ 1, at most [`Index::highest_modseq`].
    pub modseq: u64,
}

impl MessageMeta {
    /// The file name without the `:2,<flags>` info: the message's stable identity.
    pub fn base(&self) -> &str {
        base_of(&self.file_name)
    }

    /// The RFC822.SIZE (bare LFs counted as CRLF) when the file name records it (`,W=`, as
    /// hato and Dovecot write it); `None` means it has to be computed from the content.
    pub fn virtual_size(&self) -> Option<u64> {
        fsutil::virtual_size_from_base(self.base())
    }
}

/// What [`Mailbox::sync`] found.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub index: Arc<Index>,
    /// UIDs of messages this call was the first to take from `new/` (\Recent for the caller),
    /// ascending. Includes messages taken from `new/` by the folder's internal scans since the
    /// previous `sync`, so each new message is reported to exactly one caller.
    pub recent: Vec<u32>,
}

/// What [`Mailbox::store_flags`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFlagsResult {
    /// Every message of the request that exists and met the condition, ascending by UID, with
    /// its flags and mod-sequence now (whether or not they changed): the untagged FETCH
    /// (FLAGS ... MODSEQ (...)) of the answer.
    pub stored: Vec<StoredFlags>,
    /// Messages left alone because their mod-sequence was above `unchanged_since`, ascending:
    /// the `[MODIFIED ...]` response code of RFC 7162.
    pub modified: Vec<u32>,
}

/// One message's flags after a STORE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFlags {
    pub uid: u32,
    pub flags: Flags,
    pub modseq: u64,
}

/// One folder, shared (through `Arc`) by every session that has it open. See the module doc.
pub struct Mailbox {
    name: String,
    dir: PathBuf,
    /// Keeps the user's table of open folders alive while this folder is open, so that the
    /// folder is never loaded twice (two writers would hand out the same UIDs).
    _user: Arc<UserShared>,
    index: ArcSwap<Index>,
    /// Deleted or renamed away: every operation answers `NoSuchMailbox`.
    gone: AtomicBool,
    state: Mutex<State>,
    /// Workers with sessions waiting in IDLE on this folder, a bit each (worker `i` is bit
    /// `i % 64`): who the change hook tells when the index changes.
    watchers: AtomicU64,
}

/// What only writers touch (under [`Mailbox::state`]).
struct State {
    uid_validity: u32,
    next_uid: u32,
    keywords: Arc<Keywords>,
    /// `hato-uidlist` is whole, so new lines may be appended to it.
    uidlist_appendable: bool,
    /// Directory times of the last full scan, to skip the next one when nothing changed.
    stamp: Option<DirStamp>,
    /// Taken from `new/` by scans, not yet handed to a `sync` caller.
    pending_recent: Vec<u32>,
    generation: u64,
    /// The largest mod-sequence handed out (or possibly handed out before a crash).
    highest_modseq: u64,
    /// Mod-sequences up to this one are durably reserved in the log (see [`super::modseq`]).
    reserved_modseq: u64,
    /// At load with a fresh log: the mod-sequence every message gets (1 for a missing log).
    fixed_modseq: Option<u64>,
    /// At load: UIDs the log knows as present that the UID list no longer has; the first scan
    /// records them as expunged.
    pending_vanished: Vec<u32>,
    log: LogFile,
    limits: Limits,
}

/// Modification times of `new/` and `cur/` when they were last read.
#[derive(Debug, Clone, Copy)]
struct DirStamp {
    new: SystemTime,
    cur: SystemTime,
    /// Both times were over a second older than the scan, so a later change cannot leave them
    /// unchanged (file system timestamps are coarse; a change within the same tick could).
    trusted: bool,
}

/// The outcome of a full scan, not yet persisted or published.
struct Scan {
    messages: Vec<MessageMeta>,
    /// Messages from here on got their UID in this scan.
    first_new: usize,
    /// Some known message is gone.
    removed: bool,
    /// UIDs of the known messages that are gone, ascending.
    gone: Vec<u32>,
    /// Positions in `messages` that need a new mod-sequence: new, flags changed, or never
    /// given one.
    touched: Vec<usize>,
    /// Anything differs from the previous index.
    changed: bool,
    recent: Vec<u32>,
    stamp: DirStamp,
}

/// A new UIDVALIDITY: the current time, but always above the last one this process made, so a
/// folder deleted and created again within a second still gets a new one.
pub(crate) fn new_uid_validity() -> u32 {
    static LAST: AtomicU32 = AtomicU32::new(0);
    let now = u32::try_from(fsutil::unix_secs(SystemTime::now()))
        .unwrap_or(u32::MAX)
        .max(1);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A directory entry that can be a message of ours: UTF-8, no newline (the UID list is line
/// based), not hidden.
fn usable_name(name: std::ffi::OsString) -> Option<String> {
    match name.into_string() {
        Ok(s) if !s.is_empty() && !s.starts_with('.') && !s.contains('\n') => Some(s),
        Ok(_) => None,
        Err(raw) => {
            tracing::debug!(name = ?raw, "maildir: skipping a file name that is not UTF-8");
            None
        }
    }
}

fn mtime(path: &Path) -> io::Result<SystemTime> {
    fs::metadata(path)?.modified()
}

fn older_than_a_second(t: SystemTime, now: SystemTime) -> bool {
    t.checked_add(Duration::from_secs(1))
        .is_some_and(|t| t < now)
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Puts a message file at `target`: a hard link (same inode, so the modification time stays),
/// or a copy with the modification time set to `mtime` when linking is not possible.
fn link_or_copy(source: &Path, target: &Path, mtime: i64) -> io::Result<()> {
    match fs::hard_link(source, target) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Err(e),
        Err(_) => {
            let copied = (|| {
                fs::copy(source, target)?;
                let file = OpenOptions::new().write(true).open(target)?;
                file.set_modified(fsutil::from_unix_secs(mtime))?;
                file.sync_all()
            })();
            if copied.is_err() {
                let _ = fs::remove_file(target);
            }
            copied
        }
    }
}

/// A message of another folder prepared for [`Mailbox::copy_to`]: linked into our `tmp/`.
struct Staged {
    source_uid: u32,
    tmp: PathBuf,
    base: String,
    system: u8,
    keywords: Vec<String>,
    size: u64,
    internal_date: i64,
}

/// One message of [`Mailbox::append_all`]: its bytes, system flags, keyword names and
/// internal date (Unix seconds; now when `None`).
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub content: &'a [u8],
    pub system: u8,
    pub keywords: &'a [String],
    pub internal_date: Option<i64>,
}

impl Mailbox {
    /// Opens the folder at `dir`: reads its UID list (or imports Dovecot's, or starts a new one
    /// with a fresh UIDVALIDITY) and scans it.
    pub(crate) fn load(
        name: String,
        dir: PathBuf,
        user: Arc<UserShared>,
    ) -> Result<Mailbox, StoreError> {
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(StoreError::NoSuchMailbox(name)),
            Err(e) if is_not_found(&e) => return Err(StoreError::NoSuchMailbox(name)),
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        for sub in ["cur", "new", "tmp"] {
            fsutil::ensure_dir(&dir.join(sub))?;
        }
        fsutil::clean_tmp(&dir.join("tmp"));
        let keywords = Arc::new(Keywords::load(&dir)?);
        let (list, appendable) = match uidlist::load(&dir)? {
            Loaded::Hato(list) => {
                let appendable = list.appendable;
                (list, appendable)
            }
            Loaded::Dovecot(list) => {
                tracing::info!(folder = %dir.display(), uid_validity = list.uid_validity,
                    messages = list.entries.len(), "maildir: importing dovecot-uidlist");
                (list, false)
            }
            Loaded::Missing => (
                uidlist::UidList {
                    uid_validity: new_uid_validity(),
                    next_uid: 1,
                    entries: Vec::new(),
                    appendable: false,
                },
                false,
            ),
        };
        let limits = Limits::current();
        // The log's view of the messages: the first scan compares it with the disk.
        let (replay, fresh_base) = match modseq::load(&dir)? {
            modseq::Loaded::Found(replay) if replay.uid_validity == list.uid_validity => {
                (Some(replay), 0)
            }
            modseq::Loaded::Found(old) => {
                tracing::info!(folder = %dir.display(), "hato-modseq: other UIDVALIDITY, starting anew");
                // Numbers keep growing anyway; clients drop their caches on the new UIDVALIDITY.
                (None, old.highest.max(old.reserved))
            }
            modseq::Loaded::Unusable(reason) => {
                tracing::warn!(folder = %dir.display(), %reason, "hato-modseq: unreadable, rebuilding it");
                (None, 0)
            }
            modseq::Loaded::Missing => (None, 0),
        };
        let (highest_modseq, reserved_modseq, fixed_modseq, vanished, log, mut live) = match replay
        {
            Some(mut replay) => {
                let vanished = Vanished::from_entries(
                    replay.floor,
                    replay.sorted_expunges(),
                    limits.vanished_kept,
                );
                // Numbers up to the reservation may have been seen by clients before a crash:
                // HIGHESTMODSEQ starts there, fresh numbers above it.
                let highest = replay.highest.max(replay.reserved).max(1);
                let log = LogFile::new(&dir, replay.lines, replay.clean);
                (highest, replay.reserved, None, vanished, log, replay.live)
            }
            None => {
                let start = fresh_base.saturating_add(1).min(MAX_MODSEQ);
                (
                    start,
                    0,
                    Some(start),
                    Vanished::new(start),
                    LogFile::new(&dir, 0, false),
                    HashMap::new(),
                )
            }
        };
        let messages: Vec<MessageMeta> = list
            .entries
            .into_iter()
            .map(|e| {
                // Logged flags, so that the scan sees a change whose log line was lost.
                let (modseq, flags) = live
                    .remove(&e.uid)
                    .unwrap_or((UNASSIGNED_MODSEQ, Flags::default()));
                MessageMeta {
                    uid: e.uid,
                    flags,
                    size: e.size.unwrap_or(UNKNOWN_SIZE),
                    internal_date: e.mtime.unwrap_or(UNKNOWN_DATE),
                    in_new: false,
                    file_name: Arc::from(e.base),
                    modseq,
                }
            })
            .collect();
        let mut pending_vanished: Vec<u32> = live.into_keys().collect();
        pending_vanished.sort_unstable();
        let known = Index {
            changes: Arc::new(ChangeLog::default()),
            published: Instant::now(),
            uid_validity: list.uid_validity,
            uid_next: list.next_uid,
            generation: 0,
            messages,
            keywords: keywords.clone(),
            highest_modseq,
            vanished: Arc::new(vanished),
        };
        let mailbox = Mailbox {
            name,
            dir,
            _user: user,
            index: ArcSwap::from_pointee(known),
            gone: AtomicBool::new(false),
            watchers: AtomicU64::new(0),
            state: Mutex::new(State {
                uid_validity: list.uid_validity,
                next_uid: list.next_uid,
                keywords,
                uidlist_appendable: appendable,
                stamp: None,
                pending_recent: Vec::new(),
                generation: 0,
                highest_modseq,
                reserved_modseq,
                fixed_modseq,
                pending_vanished,
                log,
                limits,
            }),
        };
        {
            let mut st = mailbox.lock()?;
            mailbox.rescan(&mut st, true)?;
            st.fixed_modseq = None;
            // A fresh, torn or overgrown log is rewritten now (a publish of the scan may have
            // done so already), so that appends always go to a whole file.
            let index = mailbox.index.load_full();
            let live = index.messages.len() + index.vanished.len();
            if (!st.log.appendable || st.limits.should_compact(st.log.lines, live))
                && let Err(e) = mailbox.compact_log(&mut st, &index.messages, &index.vanished)
            {
                tracing::error!(folder = %mailbox.dir.display(), error = %e,
                    "hato-modseq: cannot write the log");
            }
        }
        Ok(mailbox)
    }

    /// The mailbox name (UTF-8, `.`-separated, `INBOX` for the root).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current index: a lock-free read.
    pub fn snapshot(&self) -> Arc<Index> {
        self.index.load_full()
    }

    /// Brings the index in line with the disk: takes files from `new/` into `cur/` (as Maildir
    /// readers do), gives UIDs to files not seen before, drops entries whose files are gone,
    /// takes in flag changes other programs made by renaming, persists the UID list when UIDs
    /// were assigned or entries dropped, and publishes the new index.
    ///
    /// Cost: two `stat`s when neither `new/` nor `cur/` changed since the last scan (and that
    /// scan was over a second after their last change); otherwise one `readdir` of each, plus a
    /// `stat` of each file never seen before. No message is read. Changes made through this
    /// `Mailbox` (append, flags, expunge, copy) are published at once and need no sync.
    pub fn sync(&self) -> Result<SyncResult, StoreError> {
        let mut st = self.lock()?;
        self.rescan(&mut st, false)?;
        Ok(SyncResult {
            index: self.index.load_full(),
            recent: std::mem::take(&mut st.pending_recent),
        })
    }

    /// Stores a message: written to `tmp/` and fsynced, moved to `cur/<base>:2,<flags>` (or to
    /// `new/` without flags), the directory fsynced, then given its UID, which is persisted
    /// before this returns. `keywords` are names; new ones are added to the folder's list.
    /// The file's modification time is `internal_date` (Unix seconds; now when `None`).
    pub fn append(
        &self,
        content: &[u8],
        system: u8,
        keywords: &[&str],
        internal_date: Option<i64>,
    ) -> Result<u32, StoreError> {
        let keywords: Vec<String> = keywords.iter().map(|k| (*k).to_string()).collect();
        let message = NewMessage {
            content,
            system,
            keywords: &keywords,
            internal_date,
        };
        let uids = self.append_all(&[message])?;
        uids.first().copied().ok_or_else(|| StoreError::Corrupt {
            path: self.dir.clone(),
            reason: "appended message was not placed".into(),
        })
    }

    /// Stores several messages as one (MULTIAPPEND, RFC 3502 §3: all of them or none). Each
    /// is written to `tmp/` and fsynced; they are then placed
    /// together, so the quota is checked for their sum and a failure anywhere leaves none of
    /// them in the folder (staged files are removed). Returns their UIDs in the given order,
    /// which is ascending.
    pub fn append_all(&self, messages: &[NewMessage<'_>]) -> Result<Vec<u32>, StoreError> {
        for m in messages {
            for k in m.keywords {
                keywords::validate(k)?;
            }
        }
        self.check_not_gone()?;
        let mut staged: Vec<Staged> = Vec::with_capacity(messages.len());
        for m in messages {
            let base = format!(
                "{},S={},W={}",
                fsutil::unique_name(),
                m.content.len(),
                fsutil::virtual_size(m.content)
            );
            let tmp = self.dir.join("tmp").join(&base);
            let mtime = m
                .internal_date
                .map_or_else(SystemTime::now, fsutil::from_unix_secs);
            if let Err(e) = fsutil::write_new_file(&tmp, m.content, Some(mtime)) {
                for s in &staged {
                    let _ = fs::remove_file(&s.tmp);
                }
                return Err(self.gone_if_missing(e));
            }
            staged.push(Staged {
                source_uid: 0,
                tmp,
                base,
                system: m.system,
                keywords: m.keywords.to_vec(),
                size: m.content.len() as u64,
                internal_date: fsutil::unix_secs(mtime),
            });
        }
        let placed = self.place(staged, true)?;
        Ok(placed.into_iter().map(|(_, uid)| uid).collect())
    }

    /// The index of keyword `name` (ASCII case-insensitive); with `create`, a new keyword is
    /// added to the folder's list (`TooManyKeywords` beyond 26). `None` when it does not exist
    /// and `create` is false.
    pub fn keyword_index(&self, name: &str, create: bool) -> Result<Option<usize>, StoreError> {
        if let Some(i) = self.index.load().keywords.find(name) {
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        keywords::validate(name)?;
        let mut st = self.lock()?;
        if let Some(i) = st.keywords.find(name) {
            return Ok(Some(i));
        }
        let bits = self.keyword_bits(&mut st, &[name.to_string()])?;
        let messages = self.index.load().messages.clone();
        // No message changed: a new generation (FLAGS changed), no new mod-sequence.
        self.publish(&mut st, messages, Some(Vec::new()), &[], &[]);
        Ok(Some(bits.trailing_zeros() as usize))
    }

    /// Keyword names by index (position `i` is keyword `i`; an unused slot is an empty string,
    /// which no message carries).
    pub fn keywords(&self) -> Vec<String> {
        self.index.load().keywords.to_vec()
    }

    /// Changes the flags of the messages `uids` by renaming their files, and returns the new
    /// flags of each one that still exists, ascending by UID. Keyword bits must come from
    /// [`Mailbox::keyword_index`]. Letters in file names that hato does not know are kept.
    /// [`Mailbox::store_flags`] without a condition, for callers that need no mod-sequences.
    pub fn set_flags(
        &self,
        uids: &[u32],
        mode: FlagMode,
        flags: Flags,
    ) -> Result<Vec<(u32, Flags)>, StoreError> {
        let done = self.store_flags(uids, mode, flags, None)?;
        Ok(done.stored.into_iter().map(|s| (s.uid, s.flags)).collect())
    }

    /// STORE, with RFC 7162's UNCHANGEDSINCE when `unchanged_since` is given: changes the
    /// flags of the messages `uids` (renaming their files) except those whose mod-sequence is
    /// above `unchanged_since`, which are left alone and listed in
    /// [`StoreFlagsResult::modified`]. The check and the change happen under the folder's
    /// lock, so no other change can come between them. Messages whose flags change get one
    /// new mod-sequence (one publish); messages already holding the wanted flags keep theirs.
    /// UIDs that do not exist are left out of both lists. Keyword bits must come from
    /// [`Mailbox::keyword_index`]; letters in file names that hato does not know are kept.
    pub fn store_flags(
        &self,
        uids: &[u32],
        mode: FlagMode,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsResult, StoreError> {
        let mut st = self.lock()?;
        let mask = st.keywords.mask();
        let given = Flags {
            system: flags.system & flags::ALL_SYSTEM,
            keywords: flags.keywords & mask,
        };
        let mut wanted = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut done = StoreFlagsResult::default();
        for attempt in 0..2 {
            let mut messages = self.index.load().messages.clone();
            let mut missing = Vec::new();
            let mut changed = Vec::new();
            let mut touched = Vec::new();
            // Entries of `done.stored` that get the mod-sequence of this attempt's publish.
            let mut renamed = Vec::new();
            let mut failure = None;
            for &uid in &wanted {
                let Ok(pos) = messages.binary_search_by_key(&uid, |m| m.uid) else {
                    continue;
                };
                let m = &mut messages[pos];
                if unchanged_since.is_some_and(|limit| m.modseq > limit) {
                    done.modified.push(uid);
                    continue;
                }
                let new = mode.apply(m.flags, given);
                if new == m.flags {
                    done.stored.push(StoredFlags {
                        uid,
                        flags: new,
                        modseq: m.modseq,
                    });
                    continue;
                }
                let (raw, unknown) = Flags::from_maildir_letters(letters_of(&m.file_name));
                let on_disk = Flags {
                    system: new.system,
                    keywords: new.keywords | (raw.keywords & !mask),
                };
                let name = format!("{}:2,{}", m.base(), on_disk.to_maildir_letters(&unknown));
                let from = self.file_path(m);
                match fs::rename(&from, self.dir.join("cur").join(&name)) {
                    Ok(()) => {
                        m.file_name = Arc::from(name);
                        m.flags = new;
                        m.in_new = false;
                        changed.push(Change::Flags(uid));
                        touched.push(pos);
                        renamed.push(done.stored.len());
                        done.stored.push(StoredFlags {
                            uid,
                            flags: new,
                            modseq: UNASSIGNED_MODSEQ,
                        });
                    }
                    Err(e) if is_not_found(&e) => missing.push(uid),
                    Err(e) => {
                        failure = Some(StoreError::io(from, e));
                        break;
                    }
                }
            }
            if !changed.is_empty() {
                let modseq = self.publish(&mut st, messages, Some(changed), &touched, &[]);
                for i in renamed {
                    done.stored[i].modseq = modseq;
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if missing.is_empty() || attempt == 1 {
                break;
            }
            // Renamed (or deleted) by another program meanwhile: learn the new names, retry.
            // The rescan gives a message renamed to other flags a new mod-sequence, so the
            // retry checks `unchanged_since` against it.
            self.rescan(&mut st, true)?;
            wanted = missing;
        }
        done.stored.sort_unstable_by_key(|s| s.uid);
        done.modified.sort_unstable();
        Ok(done)
    }

    /// Removes the messages flagged `\Deleted` (only those in `only`, when given) and returns
    /// their UIDs, ascending. Picks up flag changes on disk first. The UID list is rewritten.
    pub fn expunge(&self, only: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        let mut st = self.lock()?;
        self.rescan(&mut st, false)?;
        let only: Option<Vec<u32>> = only.map(|o| {
            let mut o = o.to_vec();
            o.sort_unstable();
            o
        });
        let mut expunged = Vec::new();
        // What the removed files held, for the quota (recorded even when a later file fails).
        let mut freed_bytes: u64 = 0;
        let mut retry: Option<Vec<u32>> = None;
        for attempt in 0..2 {
            let index = self.index.load_full();
            let mut keep = Vec::with_capacity(index.messages.len());
            let mut missing = Vec::new();
            let mut removed_now = Vec::new();
            let mut removed_uids = Vec::new();
            let mut failure = None;
            for m in &index.messages {
                let chosen = m.flags.has(flags::DELETED)
                    && only
                        .as_ref()
                        .is_none_or(|o| o.binary_search(&m.uid).is_ok())
                    && retry
                        .as_ref()
                        .is_none_or(|r| r.binary_search(&m.uid).is_ok());
                if chosen && failure.is_none() {
                    match fs::remove_file(self.file_path(m)) {
                        Ok(()) => {
                            expunged.push(m.uid);
                            freed_bytes = freed_bytes.saturating_add(m.size);
                            removed_now.push(Change::Expunged(m.uid));
                            removed_uids.push(m.uid);
                            continue;
                        }
                        Err(e) if is_not_found(&e) => missing.push(m.uid),
                        Err(e) => failure = Some(StoreError::io(self.file_path(m), e)),
                    }
                }
                keep.push(m.clone());
            }
            if !removed_now.is_empty() {
                self._user.quota.record(
                    self._user.root(),
                    -i64::try_from(freed_bytes).unwrap_or(i64::MAX),
                    -i64::try_from(removed_now.len()).unwrap_or(i64::MAX),
                );
                freed_bytes = 0;
                fsutil::fsync_dir(&self.dir.join("cur"))?;
                fsutil::fsync_dir(&self.dir.join("new"))?;
                self.persist(&mut st, &keep, keep.len(), true)?;
                self.publish(&mut st, keep, Some(removed_now), &[], &removed_uids);
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if missing.is_empty() || attempt == 1 {
                break;
            }
            // Renamed by another program meanwhile (or deleted): learn the names, retry once.
            self.rescan(&mut st, true)?;
            retry = Some(missing);
        }
        expunged.sort_unstable();
        Ok(expunged)
    }

    /// Copies messages into `dest` (which may be this folder), keeping their flags, keywords
    /// (by name) and internal dates. Files are hard-linked into `dest`'s `tmp/` (copied when a
    /// link is impossible), then moved in and given UIDs under `dest`'s lock. Returns
    /// `(source uid, new uid)` ascending; messages that no longer exist are left out.
    pub fn copy_to(&self, uids: &[u32], dest: &Mailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        self.copy_into(uids, dest, true)
    }

    /// [`Mailbox::copy_to`] as the first half of a MOVE within the user's folders: the caller
    /// expunges the originals next, so the user's usage does not grow and the quota is not
    /// checked (a user at the limit can still move mail, to Trash too, which is how many
    /// clients delete). The copies are counted and the expunge uncounts the originals.
    pub fn copy_for_move(
        &self,
        uids: &[u32],
        dest: &Mailbox,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        self.copy_into(uids, dest, false)
    }

    fn copy_into(
        &self,
        uids: &[u32],
        dest: &Mailbox,
        check_quota: bool,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        dest.check_not_gone()?;
        let mut wanted = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let dest_tmp = dest.dir.join("tmp");
        let mut snapshot = self.snapshot();
        let mut resynced = false;
        let mut staged: Vec<Staged> = Vec::with_capacity(wanted.len());
        let cleanup = |staged: &[Staged]| {
            for s in staged {
                let _ = fs::remove_file(&s.tmp);
            }
        };
        for uid in wanted {
            while let Some(pos) = snapshot.position(uid) {
                let m = &snapshot.messages[pos];
                let base = match m.virtual_size() {
                    Some(w) => format!("{},S={},W={w}", fsutil::unique_name(), m.size),
                    None => format!("{},S={}", fsutil::unique_name(), m.size),
                };
                let tmp = dest_tmp.join(&base);
                match link_or_copy(&self.file_path(m), &tmp, m.internal_date) {
                    Ok(()) => {
                        staged.push(Staged {
                            source_uid: uid,
                            tmp,
                            base,
                            system: m.flags.system,
                            keywords: snapshot
                                .keywords
                                .iter()
                                .filter(|&(i, _)| m.flags.has_keyword(i))
                                .map(|(_, name)| name.to_string())
                                .collect(),
                            size: m.size,
                            internal_date: m.internal_date,
                        });
                        break;
                    }
                    Err(e) if is_not_found(&e) && !dest_tmp.is_dir() => {
                        cleanup(&staged);
                        return Err(StoreError::NoSuchMailbox(dest.name.clone()));
                    }
                    Err(e) if is_not_found(&e) && !resynced => {
                        // Renamed by a flag change elsewhere, or expunged: look again once.
                        resynced = true;
                        let rescanned = self.lock().and_then(|mut st| self.rescan(&mut st, true));
                        if let Err(e) = rescanned {
                            cleanup(&staged);
                            return Err(e);
                        }
                        snapshot = self.snapshot();
                    }
                    Err(e) if is_not_found(&e) => break,
                    Err(e) => {
                        cleanup(&staged);
                        return Err(StoreError::io(self.file_path(m), e));
                    }
                }
            }
        }
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        dest.place(staged, check_quota)
    }

    /// The current file of a message (from the snapshot).
    pub fn path_of(&self, uid: u32) -> Option<PathBuf> {
        let index = self.index.load();
        let pos = index.position(uid)?;
        Some(self.file_path(&index.messages[pos]))
    }

    /// The whole message. If its file was renamed meanwhile (a flag change by another
    /// program), rescans once and retries; `NoSuchMessage` when it is gone.
    pub fn read(&self, uid: u32) -> Result<Vec<u8>, StoreError> {
        self.with_file(uid, |path| fs::read(path))
    }

    /// The message file opened for reading (for partial fetches of large messages), with the
    /// same retry as [`Mailbox::read`].
    pub fn open_message(&self, uid: u32) -> Result<File, StoreError> {
        self.with_file(uid, |path| File::open(path))
    }

    fn with_file<T>(&self, uid: u32, op: impl Fn(&Path) -> io::Result<T>) -> Result<T, StoreError> {
        for attempt in 0..2 {
            let Some(path) = self.path_of(uid) else {
                return Err(StoreError::NoSuchMessage(uid));
            };
            match op(&path) {
                Ok(v) => return Ok(v),
                Err(e) if is_not_found(&e) && attempt == 0 => {
                    let mut st = self.lock()?;
                    self.rescan(&mut st, true)?;
                }
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(StoreError::io(path, e)),
            }
        }
        Err(StoreError::NoSuchMessage(uid))
    }

    /// Marks the folder deleted or renamed away (after waiting for a running operation).
    pub(crate) fn mark_gone(&self) {
        let _st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.gone.store(true, Ordering::Release);
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Moves every message file of this folder into the folder at `dest_dir` (RENAME of
    /// INBOX), then rescans, which empties the index.
    pub(crate) fn move_all_to(&self, dest_dir: &Path) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        for sub in ["cur", "new"] {
            let from_dir = self.dir.join(sub);
            let to_dir = dest_dir.join(sub);
            let entries = fs::read_dir(&from_dir).map_err(|e| StoreError::io(&from_dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&from_dir, e))?;
                let Some(name) = usable_name(entry.file_name()) else {
                    continue;
                };
                match fs::rename(from_dir.join(&name), to_dir.join(&name)) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(StoreError::io(from_dir.join(&name), e)),
                }
            }
            fsutil::fsync_dir(&to_dir)?;
            fsutil::fsync_dir(&from_dir)?;
        }
        self.rescan(&mut st, true)
    }

    // ----- internals -----

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A panic while holding the lock leaves the state as consistent as the disk: every
        // change is written before the state records it.
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_gone() {
            return Err(StoreError::NoSuchMailbox(self.name.clone()));
        }
        Ok(st)
    }

    fn check_not_gone(&self) -> Result<(), StoreError> {
        if self.is_gone() {
            Err(StoreError::NoSuchMailbox(self.name.clone()))
        } else {
            Ok(())
        }
    }

    /// An I/O error, or `NoSuchMailbox` when the folder's directory no longer exists.
    fn gone_if_missing(&self, e: StoreError) -> StoreError {
        if !self.dir.is_dir() {
            self.gone.store(true, Ordering::Release);
            return StoreError::NoSuchMailbox(self.name.clone());
        }
        e
    }

    fn file_path(&self, m: &MessageMeta) -> PathBuf {
        let sub = if m.in_new { "new" } else { "cur" };
        self.dir.join(sub).join(&*m.file_name)
    }

    /// Full or fast scan, then persist and publish what changed.
    fn rescan(&self, st: &mut State, force: bool) -> Result<(), StoreError> {
        let previous = self.index.load_full();
        let Some(scan) = self.scan(st, &previous, force)? else {
            return Ok(());
        };
        if scan.changed || !st.uidlist_appendable {
            self.persist(st, &scan.messages, scan.first_new, scan.removed)?;
        }
        st.pending_recent.extend(&scan.recent);
        let mut expunged = scan.gone;
        if !st.pending_vanished.is_empty() {
            expunged.append(&mut st.pending_vanished);
            expunged.sort_unstable();
        }
        if scan.changed || !scan.touched.is_empty() || !expunged.is_empty() {
            // What an outside writer did is not itemised: sessions compare whole indexes.
            self.publish(st, scan.messages, None, &scan.touched, &expunged);
        }
        st.stamp = Some(scan.stamp);
        Ok(())
    }

    /// Reads `new/` and `cur/` against `previous`. `None` when the directory times show that
    /// nothing changed since the last full scan (unless `force`).
    fn scan(
        &self,
        st: &mut State,
        previous: &Index,
        force: bool,
    ) -> Result<Option<Scan>, StoreError> {
        let new_dir = self.dir.join("new");
        let cur_dir = self.dir.join("cur");
        let started = SystemTime::now();
        if !force
            && let Some(stamp) = st.stamp
            && stamp.trusted
            && let (Ok(new_time), Ok(cur_time)) = (mtime(&new_dir), mtime(&cur_dir))
            && new_time == stamp.new
            && cur_time == stamp.cur
        {
            return Ok(None);
        }

        metrics::counter!(crate::metrics::MAILBOX_SCANS).increment(1);
        // new/ -> cur/, as every Maildir reader does.
        let mut moved: HashSet<String> = HashSet::new();
        let mut names: Vec<(String, bool)> = Vec::new();
        let entries = fs::read_dir(&new_dir)
            .map_err(|e| self.gone_if_missing(StoreError::io(&new_dir, e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&new_dir, e))?;
            let Some(name) = usable_name(entry.file_name()) else {
                continue;
            };
            let target = if name.contains(':') {
                name.clone()
            } else {
                format!("{name}:2,")
            };
            match fs::rename(new_dir.join(&name), cur_dir.join(&target)) {
                Ok(()) => {
                    moved.insert(base_of(&name).to_string());
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(file = %new_dir.join(&name).display(), error = %e,
                        "maildir: cannot move a new message to cur/");
                    names.push((name, true));
                }
            }
        }
        // Times taken before reading cur/: a change after this point shows at the next scan.
        let new_time = mtime(&new_dir).map_err(|e| StoreError::io(&new_dir, e))?;
        let cur_time = mtime(&cur_dir).map_err(|e| StoreError::io(&cur_dir, e))?;
        let stamp = DirStamp {
            new: new_time,
            cur: cur_time,
            trusted: older_than_a_second(new_time, started)
                && older_than_a_second(cur_time, started),
        };
        let entries = fs::read_dir(&cur_dir)
            .map_err(|e| self.gone_if_missing(StoreError::io(&cur_dir, e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&cur_dir, e))?;
            if let Some(name) = usable_name(entry.file_name()) {
                names.push((name, false));
            }
        }

        let known: HashMap<&str, usize> = previous
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.base(), i))
            .collect();
        // With whether the message needs a new mod-sequence.
        let mut slots: Vec<Option<(MessageMeta, bool)>> = vec![None; previous.messages.len()];
        let mut fresh: Vec<(String, bool, Flags)> = Vec::new();
        let mut fresh_bases: HashSet<String> = HashSet::new();
        let mut changed = false;
        let mut mask = st.keywords.mask();
        let mut reloaded_keywords = false;
        for (name, in_new) in names {
            let (mut flags, _) = Flags::from_maildir_letters(letters_of(&name));
            if flags.keywords & !mask != 0 && !reloaded_keywords {
                // A letter our list does not name: another program may have added keywords.
                reloaded_keywords = true;
                if self.reload_keywords(st) {
                    mask = st.keywords.mask();
                    changed = true;
                }
            }
            // Letters of keywords without a name are kept on disk but not shown.
            flags.keywords &= mask;
            let base = base_of(&name);
            let Some(&i) = known.get(base) else {
                if fresh_bases.insert(base.to_string()) {
                    fresh.push((name, in_new, flags));
                } else {
                    tracing::warn!(folder = %self.dir.display(), file = %name,
                        "maildir: two files with the same base name; ignoring one");
                }
                continue;
            };
            if slots[i].is_some() {
                tracing::warn!(folder = %self.dir.display(), file = %name,
                    "maildir: two files with the same base name; ignoring one");
                continue;
            }
            let p = &previous.messages[i];
            let file_name = if *p.file_name == *name {
                p.file_name.clone()
            } else {
                changed = true;
                Arc::from(name.as_str())
            };
            let (size, internal_date) = if p.size == UNKNOWN_SIZE || p.internal_date == UNKNOWN_DATE
            {
                changed = true;
                let dir = if in_new { &new_dir } else { &cur_dir };
                match stat(&dir.join(&name), base)? {
                    Some(found) => found,
                    None => continue, // gone meanwhile
                }
            } else {
                (p.size, p.internal_date)
            };
            let flags_changed = p.flags != flags;
            changed |= p.in_new != in_new || flags_changed;
            let meta = MessageMeta {
                uid: p.uid,
                flags,
                size,
                internal_date,
                in_new,
                file_name,
                modseq: p.modseq,
            };
            slots[i] = Some((meta, flags_changed || p.modseq == UNASSIGNED_MODSEQ));
        }

        let mut messages: Vec<MessageMeta> = Vec::with_capacity(slots.len() + fresh.len());
        let mut touched = Vec::new();
        let mut gone = Vec::new();
        for (slot, p) in slots.into_iter().zip(&previous.messages) {
            match slot {
                Some((meta, touch)) => {
                    if touch {
                        touched.push(messages.len());
                    }
                    messages.push(meta);
                }
                None => gone.push(p.uid),
            }
        }
        let removed = !gone.is_empty();
        let first_new = messages.len();
        // Maildir names start with the delivery time: name order is arrival order.
        fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, in_new, flags) in fresh {
            let dir = if in_new { &new_dir } else { &cur_dir };
            let Some((size, internal_date)) = stat(&dir.join(&name), base_of(&name))? else {
                continue;
            };
            let uid = take_uid(st, &self.dir)?;
            touched.push(messages.len());
            messages.push(MessageMeta {
                uid,
                flags,
                size,
                internal_date,
                in_new,
                file_name: Arc::from(name),
                modseq: UNASSIGNED_MODSEQ,
            });
        }
        changed |= removed || messages.len() > first_new;
        let recent = if moved.is_empty() {
            Vec::new()
        } else {
            messages
                .iter()
                .filter(|m| moved.contains(m.base()))
                .map(|m| m.uid)
                .collect()
        };
        Ok(Some(Scan {
            messages,
            first_new,
            removed,
            gone,
            touched,
            changed,
            recent,
            stamp,
        }))
    }

    /// Takes the keyword list on disk if it extends ours (another program added keywords).
    fn reload_keywords(&self, st: &mut State) -> bool {
        match Keywords::load(&self.dir) {
            Ok(on_disk)
                if on_disk != *st.keywords
                    && st
                        .keywords
                        .iter()
                        .all(|(i, name)| on_disk.get(i) == Some(name)) =>
            {
                st.keywords = Arc::new(on_disk);
                true
            }
            _ => false,
        }
    }

    /// Writes the UID list: appends the lines of `messages[first_new..]`, or rewrites the whole
    /// file when `rewrite` (entries were removed) or when appending is not safe.
    fn persist(
        &self,
        st: &mut State,
        messages: &[MessageMeta],
        first_new: usize,
        rewrite: bool,
    ) -> Result<(), StoreError> {
        let path = self.dir.join(uidlist::FILE);
        if !rewrite && st.uidlist_appendable {
            if first_new >= messages.len() {
                return Ok(());
            }
            let mut text = String::new();
            for m in &messages[first_new..] {
                uidlist::render_line(&mut text, m.uid, m.size, m.internal_date, m.base());
            }
            let appended = OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut file| {
                    file.write_all(text.as_bytes())?;
                    file.sync_data()
                });
            match appended {
                Ok(()) => return Ok(()),
                // Removed by someone: write it whole.
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    // A partial line may be in the file now: rewrite it next time.
                    st.uidlist_appendable = false;
                    return Err(StoreError::io(path, e));
                }
            }
        }
        let mut text = uidlist::render_header(st.uid_validity, st.next_uid);
        for m in messages {
            uidlist::render_line(&mut text, m.uid, m.size, m.internal_date, m.base());
        }
        fsutil::replace_file(&self.dir.join("tmp"), &path, text.as_bytes())?;
        st.uidlist_appendable = true;
        Ok(())
    }

    /// Publishes a new index. `changes` says what changed (for sessions catching up), or `None`
    /// when that is not known (a re-read found outside changes). `touched` (positions in
    /// `messages`) and `expunged` (UIDs) are the messages this publish changes: when there are
    /// any, they get the next mod-sequence, which is logged before the index is published.
    /// Returns the folder's HIGHESTMODSEQ after the publish (the new mod-sequence, if any).
    ///
    /// Cost beyond the caller's clone of `messages`: in proportion to `touched` and `expunged`
    /// (plus, rarely, a compaction of the log, amortised over the lines it removes).
    fn publish(
        &self,
        st: &mut State,
        mut messages: Vec<MessageMeta>,
        changes: Option<Vec<Change>>,
        touched: &[usize],
        expunged: &[u32],
    ) -> u64 {
        st.generation += 1;
        let previous = self.index.load_full();
        let log = previous.changes.next(st.generation, changes);
        let mut vanished = previous.vanished.clone();
        if !touched.is_empty() || !expunged.is_empty() {
            let modseq = st
                .fixed_modseq
                .unwrap_or_else(|| st.highest_modseq.saturating_add(1).min(MAX_MODSEQ));
            for &i in touched {
                if let Some(m) = messages.get_mut(i) {
                    m.modseq = modseq;
                }
            }
            if !expunged.is_empty() {
                vanished = Arc::new(vanished.with(modseq, expunged, st.limits.vanished_kept));
            }
            st.highest_modseq = st.highest_modseq.max(modseq);
            self.log_modseq(st, &messages, touched, expunged, &vanished, modseq);
        }
        self.index.store(Arc::new(Index {
            changes: Arc::new(log),
            published: Instant::now(),
            uid_validity: st.uid_validity,
            uid_next: st.next_uid,
            generation: st.generation,
            messages,
            keywords: st.keywords.clone(),
            highest_modseq: st.highest_modseq,
            vanished,
        }));
        let watchers = self.watchers.load(Ordering::Acquire);
        if watchers != 0 {
            self._user.changed(self.id(), watchers);
        }
        st.highest_modseq
    }

    /// Logs the changes of one publish at `modseq`: appended (and fdatasynced when `modseq`
    /// passes the reservation, which the same write extends, or when there are expunges), or
    /// the whole log rewritten when it is torn or overgrown.
    ///
    /// A failure is logged, not returned: the change itself is already on disk, and the next
    /// load finds what the log misses (see [`super::modseq`]). The log is rewritten at the next
    /// publish.
    fn log_modseq(
        &self,
        st: &mut State,
        messages: &[MessageMeta],
        touched: &[usize],
        expunged: &[u32],
        vanished: &Vanished,
        modseq: u64,
    ) {
        let mut lines = touched.len() + expunged.len();
        if st.log.appendable
            && !st
                .limits
                .should_compact(st.log.lines + lines, messages.len() + vanished.len())
        {
            let mut text = String::with_capacity(lines * 28 + 24);
            for &uid in expunged {
                modseq::render_expunged(&mut text, modseq, uid);
            }
            for m in touched.iter().filter_map(|&i| messages.get(i)) {
                modseq::render_state(&mut text, m.modseq, m.uid, m.flags);
            }
            let reserve = (modseq > st.reserved_modseq)
                .then(|| modseq.saturating_add(RESERVE).min(MAX_MODSEQ));
            if let Some(r) = reserve {
                modseq::render_reserved(&mut text, r);
                lines += 1;
            }
            let sync = reserve.is_some() || !expunged.is_empty();
            match st.log.append(&text, lines, sync) {
                Ok(()) => {
                    if let Some(r) = reserve {
                        st.reserved_modseq = r;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(folder = %self.dir.display(), error = %e,
                        "hato-modseq: cannot append, rewriting the log");
                }
            }
        }
        if let Err(e) = self.compact_log(st, messages, vanished) {
            tracing::error!(folder = %self.dir.display(), error = %e,
                "hato-modseq: cannot write the log");
        }
    }

    /// Rewrites the log from the folder's state: one line per message and per remembered
    /// expunge, and a reservation (the rewrite is fsynced anyway).
    fn compact_log(
        &self,
        st: &mut State,
        messages: &[MessageMeta],
        vanished: &Vanished,
    ) -> Result<(), StoreError> {
        let reserved = st
            .reserved_modseq
            .max(st.highest_modseq.saturating_add(RESERVE).min(MAX_MODSEQ));
        let mut text = String::with_capacity((messages.len() + vanished.len()) * 28 + 64);
        modseq::render_header(&mut text, st.uid_validity);
        let mut lines = 1;
        if vanished.floor() > 0 {
            modseq::render_floor(&mut text, vanished.floor());
            lines += 1;
        }
        modseq::render_reserved(&mut text, reserved);
        lines += 1;
        for (m, uid) in vanished.iter() {
            modseq::render_expunged(&mut text, m, uid);
        }
        for m in messages {
            // Published entries always have a mod-sequence; 1 keeps the line readable if not.
            modseq::render_state(&mut text, m.modseq.max(1), m.uid, m.flags);
        }
        lines += vanished.len() + messages.len();
        st.log.rewrite(&self.dir.join("tmp"), &text, lines)?;
        st.reserved_modseq = reserved;
        Ok(())
    }

    /// Identifies this folder while it is open (its address; stable while anyone holds it).
    pub fn id(&self) -> usize {
        self as *const Mailbox as usize
    }

    /// Worker `worker` has sessions in IDLE on this folder: tell it about changes.
    pub fn watch(&self, worker: usize) {
        self.watchers.fetch_or(1 << (worker % 64), Ordering::AcqRel);
    }

    /// Worker `worker` has no more sessions in IDLE on this folder.
    pub fn unwatch(&self, worker: usize) {
        self.watchers
            .fetch_and(!(1 << (worker % 64)), Ordering::AcqRel);
    }

    /// Keyword bits for names, adding new keywords to the list (and storing it).
    fn keyword_bits(&self, st: &mut State, names: &[String]) -> Result<u32, StoreError> {
        let mut bits = 0u32;
        let mut list: Option<Keywords> = None;
        for name in names {
            let current = list.as_ref().unwrap_or(&st.keywords);
            let i = match current.find(name) {
                Some(i) => i,
                None => list
                    .get_or_insert_with(|| (*st.keywords).clone())
                    .add(name)?,
            };
            bits |= 1 << i;
        }
        if let Some(list) = list {
            list.store(&self.dir)?;
            st.keywords = Arc::new(list);
        }
        Ok(bits)
    }

    /// Moves staged files (in our `tmp/`) into the folder, fsyncs, gives them UIDs, persists
    /// and publishes. On failure nothing of it stays in the folder.
    ///
    /// With `check_quota`, the user's quota is checked first, for all of `staged` together (a
    /// COPY is refused as a whole); the new messages are recorded in it once they are in place.
    fn place(&self, staged: Vec<Staged>, check_quota: bool) -> Result<Vec<(u32, u32)>, StoreError> {
        let bytes: u64 = staged.iter().map(|s| s.size).sum();
        let count = staged.len() as u64;
        let quota = &self._user.quota;
        let checked = if check_quota {
            quota.check(self._user.root(), bytes, count)
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            for s in &staged {
                let _ = fs::remove_file(&s.tmp);
            }
            return Err(e);
        }
        let mut st = match self.lock() {
            Ok(st) => st,
            Err(e) => {
                for s in &staged {
                    let _ = fs::remove_file(&s.tmp);
                }
                return Err(e);
            }
        };
        let mut placed: Vec<PathBuf> = Vec::with_capacity(staged.len());
        let result = self.place_locked(&mut st, &staged, &mut placed);
        if result.is_err() {
            for s in &staged {
                let _ = fs::remove_file(&s.tmp);
            }
            for p in &placed {
                let _ = fs::remove_file(p);
            }
        } else {
            quota.record(
                self._user.root(),
                i64::try_from(bytes).unwrap_or(i64::MAX),
                i64::try_from(count).unwrap_or(i64::MAX),
            );
        }
        result
    }

    fn place_locked(
        &self,
        st: &mut State,
        staged: &[Staged],
        placed: &mut Vec<PathBuf>,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut metas = Vec::with_capacity(staged.len());
        for s in staged {
            let flags = Flags {
                system: s.system & flags::ALL_SYSTEM,
                keywords: self.keyword_bits(st, &s.keywords)?,
            };
            let (sub, name) = if flags.is_empty() {
                ("new", s.base.clone())
            } else {
                (
                    "cur",
                    format!("{}:2,{}", s.base, flags.to_maildir_letters("")),
                )
            };
            let target = self.dir.join(sub).join(&name);
            fs::rename(&s.tmp, &target)
                .map_err(|e| self.gone_if_missing(StoreError::io(&target, e)))?;
            placed.push(target);
            metas.push((s.source_uid, flags, sub == "new", name));
        }
        for (sub, used) in [
            ("cur", metas.iter().any(|m| !m.2)),
            ("new", metas.iter().any(|m| m.2)),
        ] {
            if used {
                fsutil::fsync_dir(&self.dir.join(sub))?;
            }
        }
        let mut messages = self.index.load().messages.clone();
        let first_new = messages.len();
        let mut pairs = Vec::with_capacity(metas.len());
        for ((source_uid, flags, in_new, name), s) in metas.into_iter().zip(staged) {
            let uid = take_uid(st, &self.dir)?;
            pairs.push((source_uid, uid));
            messages.push(MessageMeta {
                uid,
                flags,
                size: s.size,
                internal_date: s.internal_date,
                in_new,
                file_name: Arc::from(name),
                modseq: UNASSIGNED_MODSEQ,
            });
        }
        self.persist(st, &messages, first_new, false)?;
        let added = pairs.iter().map(|&(_, uid)| Change::Added(uid)).collect();
        let touched: Vec<usize> = (first_new..messages.len()).collect();
        self.publish(st, messages, Some(added), &touched, &[]);
        Ok(pairs)
    }
}

/// The next UID.
fn take_uid(st: &mut State, dir: &Path) -> Result<u32, StoreError> {
    let uid = st.next_uid;
    st.next_uid = uid.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        path: dir.to_path_buf(),
        reason: "no UIDs left (2^32 - 1 reached)".into(),
    })?;
    Ok(uid)
}

/// Size (`,S=` of the base name, else the file's) and modification time of a file; `None` when
/// it is gone.
fn stat(path: &Path, base: &str) -> Result<Option<(u64, i64)>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => {
            let size = fsutil::size_from_base(base).unwrap_or(meta.len());
            let date = meta
                .modified()
                .map(fsutil::unix_secs)
                .map_err(|e| StoreError::io(path, e))?;
            Ok(Some((size, date)))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}
