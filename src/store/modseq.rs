//! Mod-sequences for CONDSTORE/QRESYNC (RFC 7162): the per-folder log `hato-modseq` that makes
//! them survive restarts, and the bounded memory of expunged UIDs that answers VANISHED.
//!
//! # Model
//!
//! Every [`MessageMeta`](super::MessageMeta) carries a `modseq` (≥ 1) and every
//! [`Index`](super::Index) a `highest_modseq`. Each publish that changes messages (append, copy
//! or delivery in; a flag change; an expunge; a rescan that found files that appeared, vanished
//! or were renamed to other flags by another program) takes the next mod-sequence, one per
//! publish, and gives it to every message it changed; expunged UIDs are remembered with it.
//! A publish that changes no message (a new keyword in the folder's list, a file moved from
//! `new/` to `cur/`) takes none.
//!
//! *Generation and mod-sequence.* The index's `generation` still counts every publish, in
//! memory only (it starts at 0 when the folder is loaded); NOOP and IDLE compare it. The
//! mod-sequence moves only at publishes, so an unchanged generation implies an unchanged
//! HIGHESTMODSEQ, and NOOP does nothing new. The mod-sequence is what persists; the generation
//! is what sessions of one process use to catch up.
//!
//! # The log
//!
//! `hato-modseq`, next to `hato-uidlist` in the folder (not in `cur/` or `new/`, so the Maildir
//! scan never sees it; Dovecot's files are all named `dovecot*`), is text:
//!
//! ```text
//! hato-modseq 1 V<uidvalidity>
//! F<floor>                 expunges at or below this mod-sequence are not all remembered
//! R<reserved>              mod-sequences up to this one may have been handed out
//! <modseq> <uid> =<flags>  the message has these flags (Maildir letters) since <modseq>
//! <modseq> <uid> x         the message was expunged at <modseq>
//! ```
//!
//! Each publish appends one line per changed message or expunged UID, in one `write`. Flag
//! changes and additions are not fsynced (flag changes are Maildir renames, which are not
//! fsynced either; a lost line is found again at load, see below). A publish with expunges is
//! fdatasynced: an expunge already costs fsyncs of the directories and of the UID list, and
//! this way an expunge a client was told about is never forgotten, not even when a power loss
//! takes the lines of a message that was added and expunged since the last fsync. When the file has
//! grown past [`COMPACT_RATIO`] times the lines a rewrite would have (and past
//! [`COMPACT_MIN_LINES`]), it is rewritten: one line per message and per remembered expunge,
//! through a temporary file, fsync and rename.
//!
//! # Crash safety by validation
//!
//! At load the log is replayed: for each UID its last mod-sequence and flags, and the expunges.
//! Then the Maildir scan compares: a message whose flags on disk differ from the logged ones (a
//! change whose line was lost, or another program's rename), or that the log does not know,
//! gets a fresh mod-sequence; a logged UID whose file is gone is recorded as expunged at that
//! fresh mod-sequence. A torn last line is ignored (and the file rewritten before anything is
//! appended to it, so no line is ever glued to a torn one). An unreadable line elsewhere
//! (damage) raises the expunge floor to the highest logged number: it may have been an expunge.
//!
//! *Why a reservation.* Validation alone would take the fresh mod-sequence from "above
//! everything logged", but after a power loss the lost tail may have held mod-sequences that
//! clients already saw; handing them out again would attach new changes to numbers a client
//! believes it has, and it would never fetch them. So before a mod-sequence above the last
//! reservation is published, an `R` line reserving the next [`RESERVE`] numbers is appended and
//! the log is fdatasynced (one fsync per [`RESERVE`] changes, not per change; a compaction
//! reserves too, as it fsyncs anyway). At load, HIGHESTMODSEQ is at least the reservation and
//! fresh mod-sequences are above it, so HIGHESTMODSEQ never goes back and no number is reused,
//! even after a power loss. The price: HIGHESTMODSEQ may jump by up to [`RESERVE`] across a
//! restart, which clients do not mind. What a power loss can still lose is the flag change
//! itself (the rename was not fsynced), as it could before CONDSTORE.
//!
//! *A fresh log.* With no log (a new folder, a folder from before CONDSTORE or imported from
//! Dovecot), every message starts at mod-sequence 1, HIGHESTMODSEQ is 1 and the expunge floor
//! is 1. A log with another UIDVALIDITY (the folder was recreated) is discarded: messages start
//! one above its highest number, and the floor is there too. An unreadable log is logged and
//! rebuilt like a missing one. A client that presents a mod-sequence above HIGHESTMODSEQ holds
//! one from another history (e.g. Dovecot's, before a migration): the protocol side should
//! treat it as 0 (full resynchronisation); [`Index::vanished_since`](super::Index) already
//! answers `Incomplete` for it.
//!
//! # Remembered expunges
//!
//! [`Vanished`] keeps the `(modseq, uid)` of the most recent expunges, at least
//! [`VANISHED_KEPT`] per folder once that many happened (up to a chunk more, see [`Vanished`]),
//! plus the floor. It is immutable and shared by `Arc` between indexes; a publish without
//! expunges reuses it, one with expunges copies at most one chunk.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StoreError;
use super::flags::Flags;

pub(crate) const FILE: &str = "hato-modseq";
const MAGIC: &str = "hato-modseq";
const VERSION: &str = "1";

/// Expunged UIDs remembered per folder for VANISHED (EARLIER): 100,000 × 16 bytes = 1.6 MB at
/// most, and only in a folder that expunged that many.
pub const VANISHED_KEPT: usize = 100_000;

/// Mod-sequences reserved by one fsync of the log (see the module doc).
pub(crate) const RESERVE: u64 = 4096;

/// The log is rewritten when it has more lines than this many times the lines of a rewrite...
pub(crate) const COMPACT_RATIO: usize = 4;
/// ...and more than this many lines (small folders are not rewritten for a few lines).
pub(crate) const COMPACT_MIN_LINES: usize = 8192;

/// The largest mod-sequence IMAP allows (a positive 63-bit number, RFC 7162 §7).
pub const MAX_MODSEQ: u64 = i64::MAX as u64;

/// Bounds of one folder; the defaults are the constants above, tests make them small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub vanished_kept: usize,
    pub compact_min_lines: usize,
}

impl Limits {
    pub(crate) fn current() -> Limits {
        #[cfg(test)]
        if let Some(limits) = TEST_LIMITS.with(std::cell::Cell::get) {
            return limits;
        }
        Limits {
            vanished_kept: VANISHED_KEPT,
            compact_min_lines: COMPACT_MIN_LINES,
        }
    }

    /// Whether a log of `lines` lines should be rewritten, for a folder whose rewrite would
    /// have `live` lines.
    pub(crate) fn should_compact(&self, lines: usize, live: usize) -> bool {
        lines > self.compact_min_lines && lines > live.saturating_mul(COMPACT_RATIO)
    }
}

#[cfg(test)]
thread_local! {
    /// Smaller bounds for folders loaded on this thread (tests only).
    pub(crate) static TEST_LIMITS: std::cell::Cell<Option<Limits>> =
        const { std::cell::Cell::new(None) };
}

// ----- remembered expunges -----

/// The expunges a VANISHED answer needs: `(modseq, uid)` ascending by mod-sequence, bounded,
/// and a floor below which they are not all known. Cheap to clone (a few `Arc`s).
///
/// Entries are held in chunks of [`Vanished::chunk_len`] entries; only the last chunk is ever
/// copied (to append), and the oldest chunk is dropped whole once the others hold at least the
/// limit, raising the floor to its last mod-sequence. So at least `limit` entries are kept
/// (once there were that many) and fewer than `limit + chunk` at most.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vanished {
    floor: u64,
    chunks: Vec<Arc<[(u64, u32)]>>,
    len: usize,
}

/// The remembered expunges do not reach back to the client's mod-sequence: some expunges after
/// it may be forgotten. The protocol side then reports every UID of the client's range that is
/// not in the folder ([`Index::absent_uids`](super::Index::absent_uids)); RFC 7162 allows
/// reporting UIDs that never existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomplete {
    /// Expunges at or below this mod-sequence are not all known.
    pub floor: u64,
}

impl Vanished {
    pub(crate) fn new(floor: u64) -> Vanished {
        Vanished {
            floor,
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Expunges at or below this mod-sequence are not all remembered.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// How many expunges are remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every remembered `(modseq, uid)`, ascending by mod-sequence.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().copied())
    }

    /// UIDs expunged after mod-sequence `modseq`, ascending, when every such expunge is
    /// remembered (`modseq >= floor`).
    pub fn since(&self, modseq: u64) -> Result<Vec<u32>, Incomplete> {
        if modseq < self.floor {
            return Err(Incomplete { floor: self.floor });
        }
        // Chunks are in mod-sequence order: skip whole ones, then search within.
        let first = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|&(m, _)| m <= modseq));
        let mut uids: Vec<u32> = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate().skip(first) {
            let start = if i == first {
                chunk.partition_point(|&(m, _)| m <= modseq)
            } else {
                0
            };
            uids.extend(chunk[start..].iter().map(|&(_, uid)| uid));
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Entries per chunk for a limit: small enough that appending copies little, large
    /// enough that a clone copies few `Arc`s.
    fn chunk_len(limit: usize) -> usize {
        (limit / 64).clamp(1, 1024)
    }

    /// This list with `uids` expunged at `modseq` (above every remembered one), trimmed to
    /// `limit`.
    pub(crate) fn with(&self, modseq: u64, uids: &[u32], limit: usize) -> Vanished {
        let mut next = self.clone();
        next.append(uids.iter().map(|&uid| (modseq, uid)), limit);
        next
    }

    /// A list from `entries` (ascending by mod-sequence), trimmed to `limit`.
    pub(crate) fn from_entries(floor: u64, entries: &[(u64, u32)], limit: usize) -> Vanished {
        let mut list = Vanished::new(floor);
        list.append(entries.iter().copied(), limit);
        list
    }

    fn append(&mut self, entries: impl Iterator<Item = (u64, u32)>, limit: usize) {
        let chunk_len = Vanished::chunk_len(limit);
        let mut open: Vec<(u64, u32)> = match self.chunks.last() {
            Some(last) if last.len() < chunk_len => {
                let last = last.to_vec();
                self.chunks.pop();
                self.len -= last.len();
                last
            }
            _ => Vec::with_capacity(chunk_len),
        };
        for entry in entries {
            open.push(entry);
            if open.len() == chunk_len {
                self.len += open.len();
                self.chunks.push(Arc::from(std::mem::take(&mut open)));
            }
        }
        if !open.is_empty() {
            self.len += open.len();
            self.chunks.push(Arc::from(open));
        }
        while let Some(oldest) = self.chunks.first()
            && self.len - oldest.len() >= limit
        {
            if let Some(&(m, _)) = oldest.last() {
                self.floor = self.floor.max(m);
            }
            self.len -= oldest.len();
            self.chunks.remove(0);
        }
    }
}

// ----- the log file -----

/// What replaying a log found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Replay {
    pub uid_validity: u32,
    /// Messages the log knows as present: UID -> (last mod-sequence, flags then).
    pub live: HashMap<u32, (u64, Flags)>,
    /// Expunges, ascending by mod-sequence.
    pub expunged: Vec<(u64, u32)>,
    pub floor: u64,
    pub reserved: u64,
    /// The largest mod-sequence of any line.
    pub highest: u64,
    pub lines: usize,
    /// Every line whole and readable: lines may be appended to the file.
    pub clean: bool,
    /// Some line other than a torn last one could not be read.
    pub damaged: bool,
}

/// A folder's log as found on disk.
pub(crate) enum Loaded {
    Missing,
    Found(Replay),
    /// Not a log of ours (an unknown header): rebuilt like a missing one.
    Unusable(String),
}

pub(crate) fn load(folder: &Path) -> Result<Loaded, StoreError> {
    let path = folder.join(FILE);
    let text = match std::fs::read(&path) {
        // Lines are ASCII; anything else makes a line unreadable, which parse handles.
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    Ok(match parse(&text) {
        Ok(replay) => Loaded::Found(replay),
        Err(reason) => Loaded::Unusable(reason),
    })
}

/// Reads a mod-sequence: 1..=MAX_MODSEQ.
fn modseq(field: &str) -> Option<u64> {
    field
        .parse()
        .ok()
        .filter(|&m| (1..=MAX_MODSEQ).contains(&m))
}

pub(crate) fn parse(text: &str) -> Result<Replay, String> {
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or_default();
    let fields: Vec<&str> = header.split(' ').collect();
    if fields.first() != Some(&MAGIC) || fields.get(1) != Some(&VERSION) {
        return Err(format!("unknown header {header:?}"));
    }
    let uid_validity = fields
        .iter()
        .find_map(|f| f.strip_prefix('V'))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&v| v != 0)
        .ok_or("header without UIDVALIDITY")?;
    let mut replay = Replay {
        uid_validity,
        clean: text.ends_with('\n'),
        ..Replay::default()
    };
    let body: Vec<&str> = lines.collect();
    let whole = body.len().saturating_sub(1); // the piece after the last newline
    for (i, line) in body.iter().enumerate() {
        if i == whole {
            // Empty after a final newline; otherwise a torn append, ignored (clean is false).
            break;
        }
        replay.lines += 1;
        if !replay.apply(line) {
            tracing::warn!(line = %line, "hato-modseq: skipping an unreadable line");
            replay.clean = false;
            replay.damaged = true;
        }
    }
    if replay.damaged {
        // An unreadable line may have held an expunge: do not claim to know them all. (A torn
        // last line needs no such care: its publish was never seen, and the scan at load finds
        // what it changed.)
        replay.floor = replay.floor.max(replay.highest);
    }
    Ok(replay)
}

impl Replay {
    /// Takes in one line; false when it cannot be read.
    fn apply(&mut self, line: &str) -> bool {
        if let Some(v) = line.strip_prefix('R') {
            let Some(v) = modseq(v) else { return false };
            self.reserved = self.reserved.max(v);
            return true;
        }
        if let Some(v) = line.strip_prefix('F') {
            let Some(v) = modseq(v) else { return false };
            self.floor = self.floor.max(v);
            return true;
        }
        let mut parts = line.split(' ');
        let (Some(m), Some(uid), Some(what), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Some(m), Ok(uid)) = (modseq(m), uid.parse::<u32>()) else {
            return false;
        };
        if uid == 0 {
            return false;
        }
        if what == "x" {
            self.live.remove(&uid);
            self.expunged.push((m, uid));
        } else if let Some(letters) = what.strip_prefix('=') {
            let (flags, _) = Flags::from_maildir_letters(letters);
            self.live.insert(uid, (m, flags));
        } else {
            return false;
        }
        self.highest = self.highest.max(m);
        true
    }

    /// The expunges ascending by mod-sequence (they are, unless the file was edited).
    pub(crate) fn sorted_expunges(&mut self) -> &[(u64, u32)] {
        if !self.expunged.is_sorted_by_key(|&(m, _)| m) {
            self.expunged.sort_by_key(|&(m, _)| m);
        }
        &self.expunged
    }
}

pub(crate) fn render_header(out: &mut String, uid_validity: u32) {
    let _ = writeln!(out, "{MAGIC} {VERSION} V{uid_validity}");
}

pub(crate) fn render_floor(out: &mut String, floor: u64) {
    let _ = writeln!(out, "F{floor}");
}

pub(crate) fn render_reserved(out: &mut String, reserved: u64) {
    let _ = writeln!(out, "R{reserved}");
}

/// The line of a message that has `flags` since `modseq`.
pub(crate) fn render_state(out: &mut String, modseq: u64, uid: u32, flags: Flags) {
    let _ = writeln!(out, "{modseq} {uid} ={}", flags.to_maildir_letters(""));
}

/// The line of a UID expunged at `modseq`.
pub(crate) fn render_expunged(out: &mut String, modseq: u64, uid: u32) {
    let _ = writeln!(out, "{modseq} {uid} x");
}

/// The open log of one folder (held under the folder's lock).
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    /// Opened for appending on first use, dropped when the file is replaced.
    file: Option<File>,
    /// Lines in the file, for the compaction rule.
    pub lines: usize,
    /// The file is whole (no torn or unreadable line), so lines may be appended.
    pub appendable: bool,
}

impl LogFile {
    pub(crate) fn new(folder: &Path, lines: usize, appendable: bool) -> LogFile {
        LogFile {
            path: folder.join(FILE),
            file: None,
            lines,
            appendable,
        }
    }

    /// Appends `text` (`lines` whole lines) in one write; with `sync`, makes it durable.
    /// On failure the file may hold part of it, so it is marked for a rewrite.
    pub(crate) fn append(&mut self, text: &str, lines: usize, sync: bool) -> io::Result<()> {
        let result = (|| {
            if self.file.is_none() {
                self.file = Some(
                    OpenOptions::new()
                        .append(true)
                        .mode(0o600)
                        .open(&self.path)?,
                );
            }
            let Some(file) = self.file.as_mut() else {
                return Err(io::Error::other("log file not open"));
            };
            file.write_all(text.as_bytes())?;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.lines += lines,
            Err(_) => {
                self.appendable = false;
                self.file = None;
            }
        }
        result
    }

    /// Replaces the file with `text` (`lines` lines) atomically and durably.
    pub(crate) fn rewrite(
        &mut self,
        tmp_dir: &Path,
        text: &str,
        lines: usize,
    ) -> Result<(), StoreError> {
        // The old handle would append to the replaced file.
        self.file = None;
        super::fsutil::replace_file(tmp_dir, &self.path, text.as_bytes())?;
        self.lines = lines;
        self.appendable = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::flags;

    fn log(lines: &[&str]) -> String {
        let mut text = String::new();
        render_header(&mut text, 77);
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        text
    }

    #[test]
    fn replay_takes_the_last_line_of_each_uid() {
        let mut text = log(&["R10", "F1"]);
        render_state(&mut text, 2, 1, Flags::default());
        render_state(
            &mut text,
            3,
            2,
            Flags {
                system: flags::SEEN,
                keywords: 0b10,
            },
        );
        render_state(
            &mut text,
            4,
            1,
            Flags {
                system: flags::FLAGGED,
                keywords: 0,
            },
        );
        render_expunged(&mut text, 5, 2);
        let r = parse(&text).unwrap();
        assert_eq!(r.uid_validity, 77);
        assert!(r.clean);
        assert_eq!((r.highest, r.reserved, r.floor, r.lines), (5, 10, 1, 6));
        assert_eq!(
            r.live.get(&1),
            Some(&(
                4,
                Flags {
                    system: flags::FLAGGED,
                    keywords: 0
                }
            ))
        );
        assert!(!r.live.contains_key(&2));
        assert_eq!(r.expunged, [(5, 2)]);
    }

    #[test]
    fn torn_and_bad_lines_make_it_unclean() {
        let r = parse(log(&["F2", "3 1 =S", "4 2 =F", "5 3 =S"]).trim_end_matches('\n')).unwrap();
        assert!(!r.clean && !r.damaged);
        assert_eq!(r.live.len(), 2, "the torn last line is ignored");
        assert_eq!(r.highest, 4);
        assert_eq!(r.floor, 2);

        let r = parse(&log(&["3 1 =S", "garbage", "5 2 y", "0 3 =S", "6 4 =S"])).unwrap();
        assert!(!r.clean && r.damaged);
        assert_eq!(r.live.len(), 2);
        assert_eq!(r.highest, 6);
        assert_eq!(r.floor, 6, "an unreadable line may have been an expunge");

        let huge = format!("{} 1 =S", u64::MAX);
        assert!(!parse(&log(&[&huge])).unwrap().clean);
        assert!(parse("hato-modseq 2 V1\n").is_err());
        assert!(parse("hato-modseq 1\n").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn vanished_since_and_floor() {
        let v = Vanished::new(3)
            .with(4, &[10, 2], 100)
            .with(6, &[7], 100)
            .with(9, &[1, 3], 100);
        assert_eq!(v.len(), 5);
        assert_eq!(v.since(3), Ok(vec![1, 2, 3, 7, 10]));
        assert_eq!(v.since(4), Ok(vec![1, 3, 7]));
        assert_eq!(v.since(8), Ok(vec![1, 3]));
        assert_eq!(v.since(9), Ok(vec![]));
        assert_eq!(v.since(2), Err(Incomplete { floor: 3 }));
    }

    #[test]
    fn vanished_is_bounded_by_whole_chunks() {
        let limit = 640; // chunks of 10
        let mut v = Vanished::new(1);
        for m in 2..2000u64 {
            v = v.with(m, &[m as u32], limit);
            assert!(v.len() < limit + 10, "{}", v.len());
            assert!(v.len() >= limit.min(m as usize - 1));
        }
        // The floor is the last forgotten one: everything above it is known.
        let floor = v.floor();
        assert_eq!(floor, 1999 - v.len() as u64);
        assert_eq!(v.since(floor).unwrap().len(), v.len());
        assert!(v.since(floor - 1).is_err());
        // A batch larger than the limit keeps the newest.
        let batch: Vec<u32> = (5000..7000).collect();
        let big = v.with(3000, &batch, limit);
        assert!(big.len() >= limit && big.len() < limit + 10);
        assert_eq!(big.floor(), 3000, "part of that batch is forgotten");
        let rebuilt = Vanished::from_entries(1, &v.iter().collect::<Vec<_>>(), limit);
        assert_eq!(rebuilt.since(floor), v.since(floor));
    }
}
