//! A session's view of its selected mailbox: what the client has been told (RFC 3501 §7).
//!
//! Message sequence numbers belong to the session, not the mailbox: a message expunged by
//! another session keeps its number here until this session may report the `EXPUNGE` (never
//! during FETCH, STORE or SEARCH, §5.5). The view therefore keeps its own MSN → UID list and the
//! index snapshot it last reported, and [`Selected::catch_up`] turns the difference between that
//! and a newer snapshot into untagged `EXPUNGE` / `EXISTS` / `RECENT` / `FETCH (FLAGS)`.

use std::sync::Arc;

use crate::store::flags::{Flags, SYSTEM_FLAGS};
use crate::store::{Index, Mailbox};

use super::sequence::SequenceSet;

/// A selected mailbox as one session sees it.
pub struct Selected {
    pub(crate) mailbox: Arc<Mailbox>,
    /// EXAMINE: no flag changes, no expunges.
    pub(crate) read_only: bool,
    /// The snapshot the client was last brought up to date with.
    known: Arc<Index>,
    /// UID of message `msn` at `uids[msn - 1]`, ascending.
    uids: Vec<u32>,
    /// UIDs that are `\Recent` for this session, ascending.
    recent: Vec<u32>,
}

impl Selected {
    /// A fresh view of `index`, with `recent` the UIDs this session saw arrive.
    pub fn new(
        mailbox: Arc<Mailbox>,
        read_only: bool,
        index: Arc<Index>,
        recent: Vec<u32>,
    ) -> Selected {
        let uids = index.messages.iter().map(|m| m.uid).collect();
        let mut recent = recent;
        recent.sort_unstable();
        Selected {
            mailbox,
            read_only,
            known: index,
            uids,
            recent,
        }
    }

    pub fn exists(&self) -> u32 {
        // Mailboxes hold far fewer than 2^32 messages; saturate rather than wrap.
        u32::try_from(self.uids.len()).unwrap_or(u32::MAX)
    }

    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    pub fn known(&self) -> &Arc<Index> {
        &self.known
    }

    pub fn recent_count(&self) -> usize {
        self.recent.len()
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// The sequence number of `uid`, if the client knows the message.
    pub fn msn_of(&self, uid: u32) -> Option<u32> {
        let i = self.uids.binary_search(&uid).ok()?;
        u32::try_from(i + 1).ok()
    }

    /// The largest UID the client knows (0 when empty).
    pub fn largest_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// The (MSN, UID) pairs a sequence set names, ascending. `uid_mode` reads the set as UIDs.
    pub fn resolve(&self, set: &SequenceSet, uid_mode: bool) -> Vec<(u32, u32)> {
        if uid_mode {
            set.positions(&self.uids)
                .into_iter()
                .filter_map(|i| Some((u32::try_from(i + 1).ok()?, self.uids[i])))
                .collect()
        } else {
            let largest = self.exists();
            self.uids
                .iter()
                .enumerate()
                .filter_map(|(i, &uid)| {
                    let msn = u32::try_from(i + 1).ok()?;
                    set.contains(msn, largest).then_some((msn, uid))
                })
                .collect()
        }
    }

    /// Whether every number of a sequence set (MSN mode) names an existing message; RFC 3501
    /// makes a sequence number past EXISTS an error, unlike a UID.
    pub fn msn_set_valid(&self, set: &SequenceSet) -> bool {
        set.max_number().is_none_or(|max| max <= self.exists())
    }

    /// Whether the client already knows everything `latest` holds (no deferred expunges either).
    pub fn is_current(&self, latest: &Arc<Index>) -> bool {
        Arc::ptr_eq(latest, &self.known) && self.uids.len() == latest.messages.len()
    }

    /// Reports what changed between the view and `latest`. Expunges are reported only when
    /// `allow_expunge`; otherwise those messages keep their numbers until a later call. Flag
    /// changes of the UIDs in `quiet` (ascending; the caller answered them itself) are taken in
    /// without a report.
    pub fn catch_up(
        &mut self,
        latest: Arc<Index>,
        allow_expunge: bool,
        quiet: &[u32],
        out: &mut Vec<u8>,
    ) {
        if Arc::ptr_eq(&latest, &self.known) && (!allow_expunge || self.is_current(&latest)) {
            return;
        }
        let keywords = self.mailbox.keywords();

        // Flag changes of messages the client knows and that still exist.
        for (i, &uid) in self.uids.iter().enumerate() {
            let (Some(now), Some(before)) = (latest.position(uid), self.known.position(uid)) else {
                continue;
            };
            let flags = latest.messages[now].flags;
            if flags != self.known.messages[before].flags && quiet.binary_search(&uid).is_err() {
                out.extend_from_slice(b"* ");
                out.extend_from_slice((i + 1).to_string().as_bytes());
                out.extend_from_slice(b" FETCH (FLAGS ");
                write_flags(flags, &keywords, self.is_recent(uid), out);
                out.extend_from_slice(b")\r\n");
            }
        }

        if allow_expunge {
            let mut msn = 1usize;
            let mut kept = Vec::with_capacity(self.uids.len());
            for &uid in &self.uids {
                if latest.position(uid).is_some() {
                    kept.push(uid);
                    msn += 1;
                } else {
                    // Each EXPUNGE renumbers the rest, so the same number repeats.
                    out.extend_from_slice(b"* ");
                    out.extend_from_slice(msn.to_string().as_bytes());
                    out.extend_from_slice(b" EXPUNGE\r\n");
                }
            }
            self.recent.retain(|uid| kept.binary_search(uid).is_ok());
            self.uids = kept;
        }

        // New messages: UIDs only grow, so they are the ones above the largest known.
        let largest = self.largest_uid();
        let first_new = latest.messages.partition_point(|m| m.uid <= largest);
        let arrived = &latest.messages[first_new..];
        if !arrived.is_empty() {
            self.uids.extend(arrived.iter().map(|m| m.uid));
            self.recent.extend(arrived.iter().map(|m| m.uid));
            out.extend_from_slice(b"* ");
            out.extend_from_slice(self.uids.len().to_string().as_bytes());
            out.extend_from_slice(b" EXISTS\r\n* ");
            out.extend_from_slice(self.recent.len().to_string().as_bytes());
            out.extend_from_slice(b" RECENT\r\n");
        }
        self.known = latest;
    }
}

/// Writes a flag list `(\Seen $Label1)`, with `\Recent` when `recent`.
pub fn write_flags(flags: Flags, keywords: &[String], recent: bool, out: &mut Vec<u8>) {
    out.push(b'(');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    for (bit, name, _) in SYSTEM_FLAGS {
        if flags.has(bit) {
            sep(out);
            out.extend_from_slice(name.as_bytes());
        }
    }
    for (i, keyword) in keywords.iter().enumerate() {
        if flags.has_keyword(i) {
            sep(out);
            out.extend_from_slice(keyword.as_bytes());
        }
    }
    if recent {
        sep(out);
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}
