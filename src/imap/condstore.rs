//! CONDSTORE and QRESYNC (RFC 7162), the protocol side: what a session enabled, the command
//! modifiers and SELECT parameters they add, and the VANISHED responses.
//!
//! The store gives every message a mod-sequence and remembers recent expunges (see
//! [`crate::store::modseq`]); this module turns a client's view (a mod-sequence, a UID range)
//! into the answers RFC 7162 asks for. Everything here is pure: the command handlers in
//! [`super::commands`] call it with an index snapshot.
//!
//! Decisions where the RFC leaves room:
//!
//! * ENABLE answers every supported name it was given (once), also one already enabled, as
//!   Dovecot does: a client that reads `* ENABLED` as "now on" is never told "off" for an
//!   extension that is on. QRESYNC implies CONDSTORE (§3.2.3) but is not echoed as it.
//! * When the remembered expunges do not reach back to the client's mod-sequence, or the
//!   client presents one above HIGHESTMODSEQ (from another history, e.g. a folder imported
//!   from Dovecot), VANISHED (EARLIER) lists every UID of the client's range that is not in the
//!   folder, which §3.2.5.1 and §3.2.6 allow (UIDs that never existed may be reported), and
//!   the FETCH part of a QRESYNC SELECT treats the mod-sequence as 0 (a full flag resync).
//! * seq-match-data (§3.2.5.2) only narrows that fallback: a pair `(msn, uid)` that still holds
//!   proves that no message below `uid` was expunged. Pairs are read while the sequence
//!   numbers stay within the mailbox, so a hostile set costs at most one step per message.
//! * In a `UID FETCH` set, `*` stands for the highest UID ever given out (UIDNEXT - 1) for the
//!   VANISHED part, so that `1:*` also covers expunged UIDs above the largest remaining one.

use super::parser::{Args, ParseError, Token};
use super::sequence::{SequenceSet, write_compact, write_ranges};
use crate::store::Index;
use crate::store::modseq::MAX_MODSEQ;

/// The extensions a client turned on in this session, packed into one byte: the session's
/// slab slot has a tight size budget (see `runtime::worker`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled(u8);

impl Enabled {
    const CONDSTORE: u8 = 1;
    const QRESYNC: u8 = 2;
    const IMAP4REV2: u8 = 4;

    /// Nothing enabled: RFC 3501 behaviour.
    pub const NONE: Enabled = Enabled(0);

    /// CONDSTORE is on (§3.1): FETCH responses caused by flag changes carry UID and MODSEQ,
    /// SELECT/EXAMINE answer HIGHESTMODSEQ.
    pub fn condstore(self) -> bool {
        self.0 & Self::CONDSTORE != 0
    }

    /// QRESYNC is on (§3.2): expunges are reported as VANISHED instead of EXPUNGE.
    pub fn qresync(self) -> bool {
        self.0 & Self::QRESYNC != 0
    }

    /// `ENABLE IMAP4rev2` was sent (RFC 9051 §6.3.1): the session speaks IMAP4rev2 (no
    /// `\Recent`, ESEARCH answers, UTF-8 mailbox names on the wire).
    pub fn imap4rev2(self) -> bool {
        self.0 & Self::IMAP4REV2 != 0
    }

    /// After `ENABLE IMAP4rev2`. It cannot be turned off again in the session (RFC 5161 §3).
    pub fn enable_imap4rev2(&mut self) {
        self.0 |= Self::IMAP4REV2;
    }

    /// After a CONDSTORE enabling command (§3.1): SELECT/EXAMINE (CONDSTORE), FETCH MODSEQ or
    /// CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ, ENABLE.
    pub fn enable_condstore(&mut self) {
        self.0 |= Self::CONDSTORE;
    }

    /// After `ENABLE QRESYNC` (§3.2.3), which implies CONDSTORE.
    pub fn enable_qresync(&mut self) {
        self.0 |= Self::CONDSTORE | Self::QRESYNC;
    }

    /// With CONDSTORE and QRESYNC on (tests, and sessions built by hand).
    pub fn qresync_on() -> Enabled {
        let mut e = Enabled::NONE;
        e.enable_qresync();
        e
    }
}

/// Reads a mod-sequence (§7): `mod-sequence-value` (1 to 2^63 - 1), or with `zero_ok`
/// `mod-sequence-valzer` (0 too).
pub fn parse_modseq(atom: &[u8], zero_ok: bool) -> Result<u64, ParseError> {
    if atom.is_empty() || atom.len() > 20 || !atom.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadAtom);
    }
    let value = atom
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(ParseError::BadAtom)?;
    if value > MAX_MODSEQ || (value == 0 && !zero_ok) {
        return Err(ParseError::BadAtom);
    }
    Ok(value)
}

/// The next token without consuming it.
fn peek<'a>(args: &Args<'a>) -> Result<Option<Token<'a>>, ParseError> {
    args.clone().token()
}

/// The next token, which must be an atom.
fn atom<'a>(args: &mut Args<'a>) -> Result<&'a [u8], ParseError> {
    match args.token()? {
        Some(Token::Atom(a)) => Ok(a),
        None => Err(ParseError::MissingArgument),
        Some(_) => Err(ParseError::BadAtom),
    }
}

/// The FETCH modifiers of RFC 7162 (§3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchModifiers {
    /// Only messages whose mod-sequence is above this one; implies the MODSEQ item.
    pub changed_since: Option<u64>,
    /// UID FETCH only: report expunged UIDs of the set with VANISHED (EARLIER) first.
    pub vanished: bool,
}

impl FetchModifiers {
    /// The tagged BAD text when the modifiers cannot be used here (§3.2.6): VANISHED needs UID
    /// FETCH, CHANGEDSINCE, and QRESYNC enabled.
    pub fn refusal(self, uid_mode: bool, enabled: Enabled) -> Option<&'static str> {
        if !self.vanished {
            None
        } else if !uid_mode {
            Some("VANISHED is only allowed in UID FETCH")
        } else if self.changed_since.is_none() {
            Some("VANISHED requires CHANGEDSINCE")
        } else if !enabled.qresync() {
            Some("VANISHED requires ENABLE QRESYNC")
        } else {
            None
        }
    }
}

/// Reads the optional modifier list after the FETCH items: `(CHANGEDSINCE n VANISHED)`, in any
/// order, each at most once (RFC 4466 §2.4 `fetch-modifiers`).
pub fn parse_fetch_modifiers(args: &mut Args<'_>) -> Result<FetchModifiers, ParseError> {
    let mut modifiers = FetchModifiers::default();
    if args.at_end() {
        return Ok(modifiers);
    }
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList);
    }
    let mut any = false;
    loop {
        match args.token()? {
            Some(Token::ListClose) if any => return Ok(modifiers),
            Some(Token::ListClose) => return Err(ParseError::MissingArgument),
            Some(Token::Atom(name)) if name.eq_ignore_ascii_case(b"CHANGEDSINCE") => {
                if modifiers.changed_since.is_some() {
                    return Err(ParseError::TooManyArguments);
                }
                modifiers.changed_since = Some(parse_modseq(atom(args)?, true)?);
            }
            Some(Token::Atom(name)) if name.eq_ignore_ascii_case(b"VANISHED") => {
                if modifiers.vanished {
                    return Err(ParseError::TooManyArguments);
                }
                modifiers.vanished = true;
            }
            None => return Err(ParseError::Unbalanced),
            Some(_) => return Err(ParseError::BadAtom),
        }
        any = true;
    }
}

/// Reads the optional modifier list between a STORE's set and its item (§3.1.3):
/// `(UNCHANGEDSINCE n)`. Returns the mod-sequence given, if any.
pub fn parse_store_modifiers(args: &mut Args<'_>) -> Result<Option<u64>, ParseError> {
    if peek(args)? != Some(Token::ListOpen) {
        return Ok(None);
    }
    args.token()?;
    let mut unchanged_since = None;
    loop {
        match args.token()? {
            Some(Token::ListClose) if unchanged_since.is_some() => return Ok(unchanged_since),
            Some(Token::ListClose) => return Err(ParseError::MissingArgument),
            Some(Token::Atom(name)) if name.eq_ignore_ascii_case(b"UNCHANGEDSINCE") => {
                // "Only a single UNCHANGEDSINCE may be specified in a STORE operation" (§7).
                if unchanged_since.is_some() {
                    return Err(ParseError::TooManyArguments);
                }
                unchanged_since = Some(parse_modseq(atom(args)?, true)?);
            }
            None => return Err(ParseError::Unbalanced),
            Some(_) => return Err(ParseError::BadAtom),
        }
    }
}

/// The QRESYNC SELECT/EXAMINE parameter (§3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uid_validity: u32,
    /// The client's last known mod-sequence (≥ 1).
    pub modseq: u64,
    /// The UIDs the client knows (without `*`); `None`: all of them.
    pub known_uids: Option<SequenceSet>,
    /// `(known-sequence-set, known-uid-set)`: corresponding MSNs and UIDs the client knows.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// The parameters of SELECT/EXAMINE (RFC 4466 §2.1, RFC 7162 §3.1.8 and §3.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<Qresync>,
}

/// A sequence set argument in which `*` is not allowed (§7 known-uids, seq-match-data).
fn starless_set(atom: &[u8]) -> Result<SequenceSet, ParseError> {
    let set = SequenceSet::parse(atom)?;
    if set.has_star() {
        return Err(ParseError::BadSequence);
    }
    Ok(set)
}

/// Reads the optional parameter list after the mailbox name of SELECT/EXAMINE:
/// `(CONDSTORE)`, `(QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]))`, or both. An
/// unknown parameter is a syntax error (RFC 4466 §2.1: the server MUST reject it).
pub fn parse_select_params(args: &mut Args<'_>) -> Result<SelectParams, ParseError> {
    let mut params = SelectParams::default();
    if args.at_end() {
        return Ok(params);
    }
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList);
    }
    let mut any = false;
    loop {
        match args.token()? {
            Some(Token::ListClose) if any => return Ok(params),
            Some(Token::ListClose) => return Err(ParseError::MissingArgument),
            Some(Token::Atom(name)) if name.eq_ignore_ascii_case(b"CONDSTORE") => {
                params.condstore = true;
            }
            Some(Token::Atom(name)) if name.eq_ignore_ascii_case(b"QRESYNC") => {
                if params.qresync.is_some() {
                    return Err(ParseError::TooManyArguments);
                }
                params.qresync = Some(parse_qresync(args)?);
            }
            None => return Err(ParseError::Unbalanced),
            Some(_) => return Err(ParseError::BadAtom),
        }
        any = true;
    }
}

/// `(uidvalidity mod-sequence-value [known-uids] [seq-match-data])` after QRESYNC.
fn parse_qresync(args: &mut Args<'_>) -> Result<Qresync, ParseError> {
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList);
    }
    // nz-number: digits only (Rust's parse would also take a sign).
    let validity = atom(args)?;
    let uid_validity = std::str::from_utf8(validity)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&v| v != 0)
        .ok_or(ParseError::BadAtom)?;
    let modseq = parse_modseq(atom(args)?, false)?;
    let mut known_uids = None;
    if let Some(Token::Atom(_)) = peek(args)? {
        known_uids = Some(starless_set(atom(args)?)?);
    }
    let mut seq_match = None;
    if peek(args)? == Some(Token::ListOpen) {
        args.token()?;
        let seqs = starless_set(atom(args)?)?;
        let uids = starless_set(atom(args)?)?;
        if args.token()? != Some(Token::ListClose) {
            return Err(ParseError::Unbalanced);
        }
        seq_match = Some((seqs, uids));
    }
    if args.token()? != Some(Token::ListClose) {
        return Err(ParseError::Unbalanced);
    }
    Ok(Qresync {
        uid_validity,
        modseq,
        known_uids,
        seq_match,
    })
}

/// Writes `* VANISHED [(EARLIER) ]<uids>` (§3.2.10) for disjoint ascending UID ranges; nothing
/// when there are none (the response needs at least one UID).
pub fn write_vanished_ranges(earlier: bool, ranges: &[(u32, u32)], out: &mut Vec<u8>) {
    if ranges.is_empty() {
        return;
    }
    out.extend_from_slice(if earlier {
        b"* VANISHED (EARLIER) "
    } else {
        b"* VANISHED "
    });
    write_ranges(ranges, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes `* VANISHED <uids>` (§3.2.10.2, in place of EXPUNGE) for ascending UIDs.
pub fn write_vanished(uids: &[u32], out: &mut Vec<u8>) {
    if uids.is_empty() {
        return;
    }
    out.extend_from_slice(b"* VANISHED ");
    write_compact(uids, out);
    out.extend_from_slice(b"\r\n");
}

/// A client's UID set as disjoint ascending ranges, `*` standing for `last_uid` (UIDNEXT - 1,
/// the highest UID ever given out), cut at `last_uid`: UIDs from UIDNEXT on were never given
/// out, so no client knows them and VANISHED has nothing to say about them.
pub fn uid_ranges(set: &SequenceSet, last_uid: u32) -> Vec<(u32, u32)> {
    set.intervals(last_uid)
        .into_iter()
        .filter_map(|(lo, hi)| {
            let hi = hi.min(last_uid);
            (lo <= hi).then_some((lo, hi))
        })
        .collect()
}

/// Whether `uid` is in `ranges` (disjoint, ascending, inclusive).
pub fn in_ranges(ranges: &[(u32, u32)], uid: u32) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < uid);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= uid)
}

/// The UIDs a VANISHED (EARLIER) reports (§3.2.5.1, §3.2.6): those of `within` (disjoint,
/// ascending, inclusive ranges) expunged after `modseq`, as ranges. When the store cannot say
/// exactly (its memory of expunges does not reach back that far, or `modseq` is above
/// HIGHESTMODSEQ), every UID of `within` above `floor` that is not in the folder: a superset,
/// which the RFC allows. Work in proportion to the expunges remembered or to the messages in
/// `within`, never to the width of the ranges.
pub fn vanished_earlier(
    index: &Index,
    modseq: u64,
    within: &[(u32, u32)],
    floor: u32,
) -> Vec<(u32, u32)> {
    match index.vanished_since(modseq) {
        Ok(uids) => uids
            .into_iter()
            .filter(|&uid| in_ranges(within, uid))
            .map(|uid| (uid, uid))
            .collect(),
        Err(_) => within
            .iter()
            .filter(|&&(_, hi)| hi > floor)
            .flat_map(|&(lo, hi)| index.absent_uids(lo.max(floor.saturating_add(1)), hi))
            .collect(),
    }
}

/// `ranges` (disjoint, ascending) without the UIDs of `known` (ascending): a UID FETCH
/// VANISHED (EARLIER) leaves out messages the session still numbers, which a later VANISHED
/// reports when expunges may be (§3.2.10.2).
pub fn without(ranges: &[(u32, u32)], known: &[u32]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        let start = known.partition_point(|&u| u < lo);
        let end = known.partition_point(|&u| u <= hi);
        // The next UID not yet covered; u64 so that it can step past u32::MAX.
        let mut next = u64::from(lo);
        for &uid in &known[start..end] {
            if let Ok(from) = u32::try_from(next)
                && uid > from
            {
                out.push((from, uid - 1));
            }
            next = u64::from(uid) + 1;
        }
        if let Ok(from) = u32::try_from(next)
            && from <= hi
        {
            out.push((from, hi));
        }
    }
    out
}

/// The largest UID below which the client's seq-match-data proves nothing was expunged
/// (§3.2.5.2): a pair `(msn, uid)` that still holds means the `msn - 1` messages below `uid`
/// are all still there (no UID below it can be added). 0 when no pair holds. Pairs are read
/// while sequence numbers stay within the mailbox (the client MUST send them ascending), so
/// the work is bounded by the mailbox's size.
pub fn seq_match_floor(index: &Index, seqs: &SequenceSet, uids: &SequenceSet) -> u32 {
    let count = index.messages.len();
    let mut floor = 0;
    for (msn, uid) in seqs.numbers().zip(uids.numbers()) {
        let Some(i) = usize::try_from(msn).ok().and_then(|m| m.checked_sub(1)) else {
            continue;
        };
        if i >= count {
            break;
        }
        if index.messages[i].uid == uid {
            floor = floor.max(uid);
        }
    }
    floor
}

#[cfg(test)]
mod tests;
