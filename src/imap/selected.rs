//! A session's view of its selected mailbox: what the client has been told (RFC 3501 §7).
//!
//! Message sequence numbers belong to the session, not the mailbox: a message expunged by
//! another session keeps its number here until this session may report the `EXPUNGE` (never
//! during FETCH, STORE or SEARCH, §5.5). The view therefore keeps its own MSN → UID list and the
//! index snapshot it last reported, and [`Selected::catch_up`] turns the difference between that
//! and a newer snapshot into untagged `EXPUNGE` / `EXISTS` / `RECENT` / `FETCH (FLAGS)`.
//!
//! With CONDSTORE enabled (RFC 7162 §3.1, §3.2.4) those FETCH responses carry `UID` and
//! `MODSEQ`; with QRESYNC enabled (§3.2.10.2) expunges are reported as one `VANISHED <uids>`
//! instead of `EXPUNGE` per message. With IMAP4rev2 enabled (RFC 9051 Appendix E) there is no
//! `\Recent` flag and no `RECENT` response.
//!
//! The view also keeps the saved search result of SEARCHRES (RFC 5182, part of RFC 9051
//! §6.4.4.1): it belongs to the selected mailbox, so SELECT, EXAMINE, CLOSE and UNSELECT,
//! which drop the view, reset it as RFC 5182 §2.1 asks.

use std::sync::Arc;

use crate::store::flags::{Flags, SYSTEM_FLAGS};
use crate::store::{Change, Index, Mailbox, MessageMeta};

use super::condstore::{self, Enabled};
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
    /// UIDs that are `\Recent` for this session, ascending; always empty in IMAP4rev2.
    recent: Vec<u32>,
    /// The saved search result `$` (RFC 5182) as UIDs, ascending: UIDs, not sequence
    /// numbers, so that messages expunged later simply drop out of it (§2.1).
    saved: Vec<u32>,
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
            saved: Vec::new(),
        }
    }

    /// Drops the `\Recent` state: the session turned IMAP4rev2 on (RFC 9051 has no `\Recent`).
    pub fn forget_recent(&mut self) {
        self.recent = Vec::new();
    }

    /// Replaces the saved search result `$` (RFC 5182 §2.1) with these UIDs.
    pub fn save_result(&mut self, mut uids: Vec<u32>) {
        uids.sort_unstable();
        uids.dedup();
        self.saved = uids;
    }

    /// The saved search result as UIDs, ascending.
    pub fn saved_uids(&self) -> &[u32] {
        &self.saved
    }

    /// The saved search result `$` as a sequence set of this session: UIDs for a UID command,
    /// else the sequence numbers the saved messages have now (RFC 5182 §2.1). Saved messages
    /// that were expunged are left out; the set is empty when nothing is saved.
    pub fn saved_set(&self, uid_mode: bool) -> SequenceSet {
        if uid_mode {
            SequenceSet::of_ascending(&self.saved)
        } else {
            let msns: Vec<u32> = self.saved.iter().filter_map(|&u| self.msn_of(u)).collect();
            SequenceSet::of_ascending(&msns)
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
    /// without a report. `enabled` says how: with CONDSTORE, flag FETCHes carry UID and MODSEQ
    /// (and a message whose mod-sequence moved is reported even if its flags look the same, so
    /// the client's cached mod-sequence stays right); with QRESYNC, expunges are VANISHED.
    pub fn catch_up(
        &mut self,
        latest: Arc<Index>,
        allow_expunge: bool,
        quiet: &[u32],
        enabled: Enabled,
        out: &mut Vec<u8>,
    ) {
        self.catch_up_with(latest, allow_expunge, quiet, enabled, out, true);
    }

    /// [`Selected::catch_up`], optionally without the change log (tests compare the two).
    fn catch_up_with(
        &mut self,
        latest: Arc<Index>,
        allow_expunge: bool,
        quiet: &[u32],
        enabled: Enabled,
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
            Some(changes) => self.apply_logged(&latest, changes, quiet, enabled, &keywords, out),
            None => self.compare(&latest, allow_expunge, quiet, enabled, &keywords, out),
        }

        // New messages: UIDs only grow, so they are the ones above the largest known.
        let largest = self.largest_uid();
        let first_new = latest.messages.partition_point(|m| m.uid <= largest);
        let arrived = &latest.messages[first_new..];
        if !arrived.is_empty() {
            self.uids.extend(arrived.iter().map(|m| m.uid));
            out.extend_from_slice(b"* ");
            out.extend_from_slice(self.uids.len().to_string().as_bytes());
            out.extend_from_slice(b" EXISTS\r\n");
            // RFC 9051 Appendix E: IMAP4rev2 removed `\Recent` and the RECENT response.
            if !enabled.imap4rev2() {
                self.recent.extend(arrived.iter().map(|m| m.uid));
                out.extend_from_slice(b"* ");
                out.extend_from_slice(self.recent.len().to_string().as_bytes());
                out.extend_from_slice(b" RECENT\r\n");
            }
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
        enabled: Enabled,
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
            let now = &latest.messages[now];
            let before = self
                .known
                .position(uid)
                .map(|i| (self.known.messages[i].flags, self.known.messages[i].modseq));
            if changed(before, now, enabled) {
                self.write_fetch_flags(msn as usize, now, enabled, keywords, out);
            }
        }
        let mut vanished = Vec::new();
        for &(_, change) in changes {
            if let Change::Expunged(uid) = change
                && let Ok(i) = self.uids.binary_search(&uid)
            {
                if enabled.qresync() {
                    vanished.push(uid);
                } else {
                    out.extend_from_slice(b"* ");
                    out.extend_from_slice((i + 1).to_string().as_bytes());
                    out.extend_from_slice(b" EXPUNGE\r\n");
                }
                self.uids.remove(i);
                if let Ok(r) = self.recent.binary_search(&uid) {
                    self.recent.remove(r);
                }
            }
        }
        vanished.sort_unstable();
        condstore::write_vanished(&vanished, out);
    }

    /// Reports flag changes and (when allowed) expunges by comparing the view with `latest`.
    fn compare(
        &mut self,
        latest: &Index,
        allow_expunge: bool,
        quiet: &[u32],
        enabled: Enabled,
        keywords: &[String],
        out: &mut Vec<u8>,
    ) {
        // Flag changes of messages the client knows and that still exist.
        for i in 0..self.uids.len() {
            let uid = self.uids[i];
            let (Some(now), Some(before)) = (latest.position(uid), self.known.position(uid)) else {
                continue;
            };
            let now = &latest.messages[now];
            let before = &self.known.messages[before];
            if changed(Some((before.flags, before.modseq)), now, enabled)
                && quiet.binary_search(&uid).is_err()
            {
                self.write_fetch_flags(i + 1, now, enabled, keywords, out);
            }
        }

        if allow_expunge {
            let mut msn = 1usize;
            let mut kept = Vec::with_capacity(self.uids.len());
            let mut vanished = Vec::new();
            for &uid in &self.uids {
                if latest.position(uid).is_some() {
                    kept.push(uid);
                    msn += 1;
                } else if enabled.qresync() {
                    vanished.push(uid);
                } else {
                    // Each EXPUNGE renumbers the rest, so the same number repeats.
                    out.extend_from_slice(b"* ");
                    out.extend_from_slice(msn.to_string().as_bytes());
                    out.extend_from_slice(b" EXPUNGE\r\n");
                }
            }
            // The view's UIDs are ascending, so is this list.
            condstore::write_vanished(&vanished, out);
            self.recent.retain(|uid| kept.binary_search(uid).is_ok());
            self.uids = kept;
        }
    }

    fn write_fetch_flags(
        &self,
        msn: usize,
        now: &MessageMeta,
        enabled: Enabled,
        keywords: &[String],
        out: &mut Vec<u8>,
    ) {
        let recent = self.is_recent(now.uid);
        write_flag_fetch(
            out,
            msn,
            now.uid,
            Some((now.flags, keywords, recent)),
            enabled.condstore().then_some(now.modseq),
        );
    }
}

/// Whether a message the client knows (`before`: its flags and mod-sequence then) is to be
/// reported: its flags changed, or, with CONDSTORE, its mod-sequence did.
fn changed(before: Option<(Flags, u64)>, now: &MessageMeta, enabled: Enabled) -> bool {
    match before {
        Some((flags, modseq)) => {
            flags != now.flags || (enabled.condstore() && modseq != now.modseq)
        }
        None => true,
    }
}

/// Writes an untagged FETCH for a flag change: `* <msn> FETCH (FLAGS (...))`, or with `modseq`
/// given (CONDSTORE enabled) `* <msn> FETCH (UID <uid> FLAGS (...) MODSEQ (<m>))`: RFC 7162
/// §3.1 puts the mod-sequence, and §3.2.4 the UID, into every FETCH caused by a flag change
/// once a CONDSTORE enabling command was seen. `flags` (the flags, the keyword names, whether
/// `\Recent`) is `None` for a STORE .SILENT under CONDSTORE, which still owes the mod-sequence
/// (§3.1.3): `* <msn> FETCH (UID <uid> MODSEQ (<m>))`.
pub fn write_flag_fetch(
    out: &mut Vec<u8>,
    msn: usize,
    uid: u32,
    flags: Option<(Flags, &[String], bool)>,
    modseq: Option<u64>,
) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(msn.to_string().as_bytes());
    out.extend_from_slice(b" FETCH (");
    let mut sep: &[u8] = b"";
    if modseq.is_some() {
        out.extend_from_slice(b"UID ");
        out.extend_from_slice(uid.to_string().as_bytes());
        sep = b" ";
    }
    if let Some((flags, keywords, recent)) = flags {
        out.extend_from_slice(sep);
        out.extend_from_slice(b"FLAGS ");
        write_flags(flags, keywords, recent, out);
        sep = b" ";
    }
    if let Some(modseq) = modseq {
        out.extend_from_slice(sep);
        out.extend_from_slice(b"MODSEQ (");
        out.extend_from_slice(modseq.to_string().as_bytes());
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
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

    /// A fresh spool whose INBOX holds `n` small messages.
    fn inbox_with(n: usize) -> (tempfile::TempDir, std::sync::Arc<Mailbox>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mailbox = Store::new(dir.path())
            .user("u")
            .and_then(|m| m.open("INBOX"))
            .expect("INBOX");
        for _ in 0..n {
            mailbox
                .append(b"Subject: x\r\n\r\nbody\r\n", 0, &[], None)
                .expect("append");
        }
        (dir, mailbox)
    }

    #[test]
    fn the_change_log_reports_what_comparing_indexes_reports() {
        log_matches_compare(Enabled::NONE);
        log_matches_compare(Enabled::qresync_on());
    }

    fn log_matches_compare(enabled: Enabled) {
        let (_dir, mailbox) = inbox_with(30);
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
            logged.catch_up_with(latest.clone(), allow_expunge, &[], enabled, &mut a, true);
            compared.catch_up_with(latest, allow_expunge, &[], enabled, &mut b, false);
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

    /// A catch-up over both paths (change log, comparison) with `enabled`.
    fn both_ways(mailbox: &Arc<Mailbox>, start: &Arc<Index>, enabled: Enabled) -> (String, String) {
        let latest = mailbox.snapshot();
        let mut texts = Vec::new();
        for use_log in [true, false] {
            let mut view = Selected::new(mailbox.clone(), false, start.clone(), Vec::new());
            let mut out = Vec::new();
            view.catch_up_with(latest.clone(), true, &[], enabled, &mut out, use_log);
            assert_eq!(view.uids, vec![1, 2, 5], "use_log {use_log}");
            texts.push(String::from_utf8_lossy(&out).into_owned());
        }
        (texts.remove(0), texts.remove(0))
    }

    #[test]
    fn qresync_reports_vanished_and_condstore_uid_and_modseq() {
        let (_dir, mailbox) = inbox_with(5);
        let start = mailbox.snapshot();
        let flag = |uids: &[u32], system| {
            mailbox
                .set_flags(
                    uids,
                    FlagMode::Add,
                    Flags {
                        system,
                        keywords: 0,
                    },
                )
                .expect("flags")
        };
        flag(&[2], flags::SEEN);
        flag(&[3, 4], flags::DELETED);
        mailbox.expunge(None).expect("expunge");
        let latest = mailbox.snapshot();
        let modseq_of_2 = latest.messages[1].modseq;

        let (logged, compared) = both_ways(&mailbox, &start, Enabled::NONE);
        assert_eq!(logged, compared);
        assert_eq!(
            logged,
            "* 2 FETCH (FLAGS (\\Seen))\r\n* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n"
        );

        let mut condstore = Enabled::NONE;
        condstore.enable_condstore();
        let (logged, compared) = both_ways(&mailbox, &start, condstore);
        assert_eq!(logged, compared);
        assert_eq!(
            logged,
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ({modseq_of_2}))\r\n\
                 * 3 EXPUNGE\r\n* 3 EXPUNGE\r\n"
            )
        );

        let (logged, compared) = both_ways(&mailbox, &start, Enabled::qresync_on());
        assert_eq!(logged, compared);
        assert_eq!(
            logged,
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ({modseq_of_2}))\r\n* VANISHED 3:4\r\n"
            )
        );
    }

    #[test]
    fn a_silent_store_under_condstore_still_owes_the_modseq() {
        let mut out = Vec::new();
        write_flag_fetch(&mut out, 4, 9, None, Some(77));
        assert_eq!(out, b"* 4 FETCH (UID 9 MODSEQ (77))\r\n");
        out.clear();
        write_flag_fetch(&mut out, 4, 9, Some((Flags::default(), &[], true)), None);
        assert_eq!(out, b"* 4 FETCH (FLAGS (\\Recent))\r\n");
    }
}
