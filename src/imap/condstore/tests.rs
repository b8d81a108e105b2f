use super::*;
use crate::imap::parser::parse_command;
use crate::store::flags::{self, Flags};
use crate::store::{FlagMode, Mailbox, Store};
use std::sync::Arc;

/// The arguments of `a X <rest>`, after the command name.
fn args_of(frame: &str) -> Args<'_> {
    parse_command(frame.as_bytes()).expect("command head").args
}

#[test]
fn modseq_values() {
    assert_eq!(parse_modseq(b"0", true), Ok(0));
    assert_eq!(parse_modseq(b"0", false), Err(ParseError::BadAtom));
    assert_eq!(parse_modseq(b"9223372036854775807", false), Ok(MAX_MODSEQ));
    assert_eq!(
        parse_modseq(b"9223372036854775808", false),
        Err(ParseError::BadAtom)
    );
    assert!(parse_modseq(b"99999999999999999999999", true).is_err());
    assert_eq!(parse_modseq(b"-1", true), Err(ParseError::BadAtom));
    assert_eq!(parse_modseq(b"", true), Err(ParseError::BadAtom));
}

#[test]
fn fetch_modifiers() {
    let mut args = args_of("a FETCH (CHANGEDSINCE 12 VANISHED)\r\n");
    let m = parse_fetch_modifiers(&mut args).expect("parses");
    assert_eq!(
        m,
        FetchModifiers {
            changed_since: Some(12),
            vanished: true
        }
    );
    args.finish().expect("consumed");
    assert_eq!(
        m.refusal(false, Enabled::qresync_on()),
        Some("VANISHED is only allowed in UID FETCH")
    );
    assert_eq!(
        m.refusal(true, Enabled::NONE),
        Some("VANISHED requires ENABLE QRESYNC")
    );
    assert_eq!(m.refusal(true, Enabled::qresync_on()), None);
    let m = parse_fetch_modifiers(&mut args_of("a FETCH (vanished)\r\n")).expect("parses");
    assert_eq!(
        m.refusal(true, Enabled::qresync_on()),
        Some("VANISHED requires CHANGEDSINCE")
    );
    assert_eq!(
        parse_fetch_modifiers(&mut args_of("a FETCH\r\n")),
        Ok(FetchModifiers::default())
    );
    for bad in [
        "a FETCH ()\r\n",
        "a FETCH (CHANGEDSINCE)\r\n",
        "a FETCH (CHANGEDSINCE x)\r\n",
        "a FETCH (CHANGEDSINCE 1 CHANGEDSINCE 2)\r\n",
        "a FETCH (FROB)\r\n",
        "a FETCH (CHANGEDSINCE 1\r\n",
        "a FETCH CHANGEDSINCE 1\r\n",
    ] {
        assert!(parse_fetch_modifiers(&mut args_of(bad)).is_err(), "{bad}");
    }
}

#[test]
fn store_modifiers() {
    let mut args = args_of("a STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)\r\n");
    args.atom().expect("set");
    assert_eq!(parse_store_modifiers(&mut args), Ok(Some(0)));
    assert_eq!(args.atom().expect("item"), b"+FLAGS");
    let mut args = args_of("a STORE 1 FLAGS (\\Seen)\r\n");
    args.atom().expect("set");
    assert_eq!(parse_store_modifiers(&mut args), Ok(None));
    assert_eq!(args.atom().expect("item"), b"FLAGS");
    for bad in [
        "a STORE 1 () FLAGS x\r\n",
        "a STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS x\r\n",
        "a STORE 1 (UNCHANGED 1) FLAGS x\r\n",
    ] {
        let mut args = args_of(bad);
        args.atom().expect("set");
        assert!(parse_store_modifiers(&mut args).is_err(), "{bad}");
    }
}

#[test]
fn select_params() {
    let p = parse_select_params(&mut args_of("a SELECT (CONDSTORE)\r\n")).expect("parses");
    assert_eq!(
        p,
        SelectParams {
            condstore: true,
            qresync: None
        }
    );
    let mut args = args_of("a SELECT (QRESYNC (67890007 90060115194045000 41:211,214:541))\r\n");
    let p = parse_select_params(&mut args).expect("parses");
    args.finish().expect("consumed");
    let q = p.qresync.expect("qresync");
    assert_eq!((q.uid_validity, q.modseq), (67890007, 90060115194045000));
    assert_eq!(
        q.known_uids.map(|s| s.intervals(0)),
        Some(vec![(41, 211), (214, 541)])
    );
    assert!(q.seq_match.is_none());
    let p = parse_select_params(&mut args_of(
        "a SELECT (QRESYNC (1 2 1:10 (1:3,5 2,4:6)) CONDSTORE)\r\n",
    ))
    .expect("parses");
    assert!(p.condstore);
    let q = p.qresync.expect("qresync");
    let (seqs, uids) = q.seq_match.expect("seq-match-data");
    assert_eq!(seqs.numbers().collect::<Vec<_>>(), vec![1, 2, 3, 5]);
    assert_eq!(uids.numbers().collect::<Vec<_>>(), vec![2, 4, 5, 6]);
    // seq-match-data without known-uids.
    let p =
        parse_select_params(&mut args_of("a SELECT (QRESYNC (1 2 (1 2)))\r\n")).expect("parses");
    let q = p.qresync.expect("qresync");
    assert!(q.known_uids.is_none() && q.seq_match.is_some());
    for bad in [
        "a SELECT ()\r\n",
        "a SELECT (FROB)\r\n",
        "a SELECT (QRESYNC)\r\n",
        "a SELECT (QRESYNC (1))\r\n",
        "a SELECT (QRESYNC (0 5))\r\n",
        "a SELECT (QRESYNC (+1 5))\r\n",
        "a SELECT (QRESYNC (1 0))\r\n",
        "a SELECT (QRESYNC (1 5 1:*))\r\n",
        "a SELECT (QRESYNC (1 5 1:4 (1:* 1:4)))\r\n",
        "a SELECT (QRESYNC (1 5 1:4 (1:4)))\r\n",
        "a SELECT (QRESYNC (1 5) QRESYNC (1 5))\r\n",
        "a SELECT (QRESYNC (1 5)\r\n",
        "a SELECT CONDSTORE\r\n",
    ] {
        assert!(parse_select_params(&mut args_of(bad)).is_err(), "{bad}");
    }
}

#[test]
fn vanished_rendering() {
    let mut out = Vec::new();
    write_vanished_ranges(true, &[(1, 3), (5, 5), (7, u32::MAX)], &mut out);
    assert_eq!(out, b"* VANISHED (EARLIER) 1:3,5,7:4294967295\r\n");
    out.clear();
    write_vanished(&[2, 3, 4, 9], &mut out);
    assert_eq!(out, b"* VANISHED 2:4,9\r\n");
    out.clear();
    write_vanished(&[], &mut out);
    write_vanished_ranges(false, &[], &mut out);
    assert!(out.is_empty(), "no VANISHED without UIDs");
}

#[test]
fn ranges_without_known_uids() {
    assert!(in_ranges(&[(1, 3), (7, 9)], 8));
    assert!(!in_ranges(&[(1, 3), (7, 9)], 5));
    assert_eq!(without(&[(1, 10)], &[1, 4, 5, 10]), vec![(2, 3), (6, 9)]);
    assert_eq!(without(&[(1, 3), (8, 9)], &[5]), vec![(1, 3), (8, 9)]);
    assert_eq!(
        without(&[(u32::MAX - 2, u32::MAX)], &[u32::MAX]),
        vec![(u32::MAX - 2, u32::MAX - 1)]
    );
    assert_eq!(without(&[(4, 4)], &[4]), vec![]);
}

/// A mailbox with messages 1..=10, then 3, 4 and 8 expunged; returns it with the
/// HIGHESTMODSEQ before the expunge.
fn folder(dir: &std::path::Path) -> (Arc<Mailbox>, u64) {
    let store = Store::new(dir);
    let mailbox = store
        .user("u")
        .and_then(|m| m.open("INBOX"))
        .expect("INBOX");
    for _ in 0..10 {
        mailbox
            .append(b"Subject: x\r\n\r\nbody\r\n", 0, &[], None)
            .expect("append");
    }
    let before = mailbox.snapshot().highest_modseq;
    let deleted = Flags {
        system: flags::DELETED,
        keywords: 0,
    };
    mailbox
        .set_flags(&[3, 4, 8], FlagMode::Add, deleted)
        .expect("flag");
    mailbox.expunge(None).expect("expunge");
    (mailbox, before)
}

#[test]
fn vanished_earlier_exact_and_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mailbox, before) = folder(dir.path());
    let index = mailbox.snapshot();
    // Exact: only the expunges after `before`, within the client's ranges.
    assert_eq!(
        vanished_earlier(&index, before, &[(1, 100)], 0),
        vec![(3, 3), (4, 4), (8, 8)]
    );
    assert_eq!(vanished_earlier(&index, before, &[(4, 7)], 0), vec![(4, 4)]);
    assert_eq!(
        vanished_earlier(&index, index.highest_modseq, &[(1, 100)], 0),
        vec![]
    );
    // A mod-sequence from another history: every absent UID of the range.
    let foreign = index.highest_modseq + 1000;
    assert_eq!(
        vanished_earlier(&index, foreign, &[(1, 12)], 0),
        vec![(3, 4), (8, 8), (11, 12)]
    );
    // Narrowed by a seq-match floor.
    assert_eq!(
        vanished_earlier(&index, foreign, &[(1, 12)], 5),
        vec![(8, 8), (11, 12)]
    );
}

#[test]
fn seq_match_proves_what_was_not_expunged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mailbox, _) = folder(dir.path());
    let index = mailbox.snapshot();
    // Now: msn 1..7 = uid 1,2,5,6,7,9,10.
    let set = |s: &str| SequenceSet::parse(s.as_bytes()).expect("set");
    // The client knew msn 1,2 = uid 1,2 (still so) and msn 5 = uid 5 (no longer: now msn 3).
    assert_eq!(seq_match_floor(&index, &set("1,2,5"), &set("1,2,5")), 2);
    // msn 6 = uid 9 still holds after the expunges: nothing below 9 vanished since then.
    assert_eq!(seq_match_floor(&index, &set("1,6"), &set("1,9")), 9);
    assert_eq!(
        seq_match_floor(&index, &set("1:4294967295"), &set("100:200")),
        0
    );
}
