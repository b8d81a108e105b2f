//! A session's view of its selected mailbox: what the client has been told (RFC 3501 §7).
//!
//! Message sequence numbers belong to the session, not the mailbox: a message expunged by
//! another session keeps its number here until this session may report the `EXPUNGE` (never
//! during FETCH, STORE or SEARCH, §5.5). The view therefore keeps its own MSN → UID list and the
//! index snapshot it last reported, and [`Selected::catch_up`] turns the difference between that
//! and a newer snapshot into untagged `EXPUNGE` / `EXISTS` / `RECENT` / `FETCH (FLAGS)`.

use std::sync::Arc;

use crate::store::flags::{Flags, SYSTEM_FLAGS};
use crate::store::{Change, Index, Mailbox};

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
        self.catch_up_with(latest, allow_expunge, quiet, out, true);
    }

    /// [`Selected::catch_up`], optionally without the change log (tests compare the two).
    fn catch_up_with(
        &mut self,
        latest: Arc<Index>,
        allow_expunge: bool,
        quiet: &[u32],
        out: &mut Vec<u8>,
        use_log: bool,
    ) {
        if Arc::ptr_eq(&latest, &self.known) && (!allow_expunge || self.is_current(&latest)) {
            return;
        }
        let keywords = self.mailbox.keywords();
        // The log serves when the view holds no deferred expunges and the log still covers
        // everything since the view's generation; otherwise compare whole indexes.
        let logged = if use_log && self.uids.len() == self.known.messages.len() {
            latest.changes.since(self.known.generation).filter(|c| {
                allow_expunge || !c.iter().any(|(_, c)| matches!(c, Change::Expunged(_)))
            })
        } else {
            None
        };
        match logged {
            Some(changes) => self.apply_logged(&latest, changes, quiet, &keywords, out),
            None => self.compare(&latest, allow_expunge, quiet, &keywords, out),
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

    /// Reports the flag changes and expunges the change log lists: work in proportion to the
    /// changes, not to the mailbox.
    fn apply_logged(
        &mut self,
        latest: &Index,
        changes: &[(u64, Change)],
        quiet: &[u32],
        keywords: &[String],
        out: &mut Vec<u8>,
    ) {
        let mut flagged: Vec<u32> = changes
            .iter()
            .filter_map(|&(_, c)| match c {
                Change::Flags(uid) => Some(uid),
                _ => None,
            })
            .collect();
        flagged.sort_unstable();
        flagged.dedup();
        // Ascending UIDs are ascending sequence numbers.
        for uid in flagged {
            if quiet.binary_search(&uid).is_ok() {
                continue;
            }
            let (Some(msn), Some(now)) = (self.msn_of(uid), latest.position(uid)) else {
                continue;
            };
            let flags = latest.messages[now].flags;
            let before = self
                .known
                .position(uid)
                .map(|i| self.known.messages[i].flags);
            if before != Some(flags) {
                self.write_fetch_flags(msn as usize, uid, flags, keywords, out);
            }
        }
        for &(_, change) in changes {
            if let Change::Expunged(uid) = change
                && let Ok(i) = self.uids.binary_search(&uid)
            {
                out.extend_from_slice(b"* ");
                out.extend_from_slice((i + 1).to_string().as_bytes());
                out.extend_from_slice(b" EXPUNGE\r\n");
                self.uids.remove(i);
                if let Ok(r) = self.recent.binary_search(&uid) {
                    self.recent.remove(r);
                }
            }
        }
    }

    /// Reports flag changes and (when allowed) expunges by comparing the view with `latest`.
    fn compare(
        &mut self,
        latest: &Index,
        allow_expunge: bool,
        quiet: &[u32],
        keywords: &[String],
        out: &mut Vec<u8>,
    ) {
        // Flag changes of messages the client knows and that still exist.
        for i in 0..self.uids.len() {
            let uid = self.uids[i];
            let (Some(now), Some(before)) = (latest.position(uid), self.known.position(uid)) else {
                continue;
            };
            let flags = latest.messages[now].flags;
            if flags != self.known.messages[before].flags && quiet.binary_search(&uid).is_err() {
                self.write_fetch_flags(i + 1, uid, flags, keywords, out);
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
    }

    fn write_fetch_flags(
        &self,
        msn: usize,
        uid: u32,
        flags: Flags,
        keywords: &[String],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"* ");
        out.extend_from_slice(msn.to_string().as_bytes());
        out.extend_from_slice(b" FETCH (FLAGS ");
        write_flags(flags, keywords, self.is_recent(uid), out);
        out.extend_from_slice(b")\r\n");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::flags::{self, Flags};
    use crate::store::{FlagMode, Store};

    /// A small deterministic generator (no dependency needed for a test's random choices).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % below.max(1)
        }
    }

    #[test]
    fn the_change_log_reports_what_comparing_indexes_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let mailbox = store
            .user("u")
            .and_then(|m| m.open("INBOX"))
            .expect("INBOX");
        for _ in 0..30 {
            mailbox
                .append(b"Subject: x\r\n\r\nbody\r\n", 0, &[], None)
                .expect("append");
        }
        let start = mailbox.snapshot();
        let mut logged = Selected::new(mailbox.clone(), false, start.clone(), Vec::new());
        let mut compared = Selected::new(mailbox.clone(), false, start, Vec::new());
        let mut rng = Lcg(7);
        let mut used_log = 0;
        for round in 0..300 {
            let uids: Vec<u32> = mailbox.snapshot().messages.iter().map(|m| m.uid).collect();
            let pick = |rng: &mut Lcg| -> Vec<u32> {
                let n = rng.next(4) as usize + 1;
                (0..n)
                    .filter_map(|_| uids.get(rng.next(uids.len() as u64) as usize).copied())
                    .collect()
            };
            match rng.next(4) {
                0 => {
                    mailbox
                        .append(b"Subject: y\r\n\r\nbody\r\n", 0, &[], None)
                        .expect("append");
                }
                1 => {
                    let mode =
                        [FlagMode::Add, FlagMode::Remove, FlagMode::Replace][rng.next(3) as usize];
                    let system = [flags::SEEN, flags::FLAGGED, flags::SEEN | flags::ANSWERED]
                        [rng.next(3) as usize];
                    let chosen = pick(&mut rng);
                    mailbox
                        .set_flags(
                            &chosen,
                            mode,
                            Flags {
                                system,
                                keywords: 0,
                            },
                        )
                        .expect("flags");
                }
                2 => {
                    let chosen = pick(&mut rng);
                    let deleted = Flags {
                        system: flags::DELETED,
                        keywords: 0,
                    };
                    mailbox
                        .set_flags(&chosen, FlagMode::Add, deleted)
                        .expect("flags");
                    mailbox.expunge(Some(&chosen)).expect("expunge");
                }
                _ => {}
            }
            let latest = mailbox.snapshot();
            // Now and then a FETCH-like catch-up, which must not report expunges.
            let allow_expunge = round % 7 != 0;
            if logged.uids.len() == logged.known.messages.len()
                && latest.changes.since(logged.known.generation).is_some()
            {
                used_log += 1;
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            logged.catch_up_with(latest.clone(), allow_expunge, &[], &mut a, true);
            compared.catch_up_with(latest, allow_expunge, &[], &mut b, false);
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "round {round}"
            );
            assert_eq!(logged.uids, compared.uids, "round {round}");
            assert_eq!(logged.recent, compared.recent, "round {round}");
        }
        assert!(used_log > 100, "the log served only {used_log} catch-ups");
    }
}
