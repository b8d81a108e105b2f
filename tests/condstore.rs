//! CONDSTORE and QRESYNC (RFC 7162) end to end, against the real binary: quick
//! resynchronisation across sessions and across a restart, conditional STORE, FETCH
//! CHANGEDSINCE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ, VANISHED in place of EXPUNGE, and
//! unchanged answers for a client that enabled nothing.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server, Spool};

fn login(server: &Server) -> Client {
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c
}

/// Appends `n` messages to INBOX.
fn append(c: &mut Client, n: usize) {
    for i in 0..n {
        let tag = format!("ap{i}");
        c.send(
            format!("{tag} APPEND INBOX {{20+}}\r\nSubject: m{i:02}\r\n\r\nbody\r\n").as_bytes(),
        );
        let answer = c.until_tagged(&tag).1;
        assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
    }
}

/// Sends a command; returns (untagged lines, tagged line), asserting an OK.
fn ok(c: &mut Client, tag: &str, command: &str) -> Vec<String> {
    c.send(format!("{tag} {command}\r\n").as_bytes());
    let (untagged, tagged) = c.until_tagged(tag);
    assert!(
        tagged.starts_with(&format!("{tag} OK")),
        "{command}: {tagged} after {untagged:?}"
    );
    untagged
}

/// The number in `* OK [<code> n]` among `lines`.
fn code(lines: &[String], code: &str) -> Option<u64> {
    let prefix = format!("* OK [{code} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix)?.split(']').next()?.parse().ok())
}

/// The n of `MODSEQ (n)` in a FETCH line.
fn modseq_of(line: &str) -> u64 {
    line.split("MODSEQ (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MODSEQ in {line}"))
}

/// `(UIDVALIDITY, HIGHESTMODSEQ)` from a SELECT answer.
fn select_state(lines: &[String]) -> (u64, u64) {
    (
        code(lines, "UIDVALIDITY").expect("UIDVALIDITY"),
        code(lines, "HIGHESTMODSEQ").expect("HIGHESTMODSEQ"),
    )
}

fn fetches(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains(" FETCH ")).collect()
}

/// Reads untagged lines until one satisfies `want`, or fails after `limit`.
fn expect_line(c: &mut Client, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        assert!(Instant::now() < deadline, "expected line did not arrive");
        c.set_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        );
        let line = c.line();
        if want(&line) {
            return line;
        }
    }
}

/// Checks the answer of `SELECT INBOX (QRESYNC (v m 1:6))` after the changes of
/// `quick_resync_returns_exactly_the_changes`: UIDs 3 and 5 expunged, 2 and 4 flagged.
fn check_resync(lines: &[String], m: u64) {
    let vanished: Vec<&String> = lines.iter().filter(|l| l.contains("VANISHED")).collect();
    assert_eq!(
        vanished,
        vec!["* VANISHED (EARLIER) 3,5"],
        "exactly the expunged UIDs: {lines:?}"
    );
    let fetched = fetches(lines);
    assert_eq!(fetched.len(), 2, "exactly the changed messages: {lines:?}");
    // After the expunges: 1 = UID 1, 2 = UID 2, 3 = UID 4, 4 = UID 6.
    assert!(
        fetched[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("),
        "{fetched:?}"
    );
    assert!(
        fetched[1].starts_with("* 3 FETCH (UID 4 FLAGS (\\Seen $Work) MODSEQ ("),
        "{fetched:?}"
    );
    let highest = code(lines, "HIGHESTMODSEQ").expect("HIGHESTMODSEQ");
    for f in &fetched {
        let modseq = modseq_of(f);
        assert!(
            modseq > m && modseq <= highest,
            "{f} against {m}..={highest}"
        );
    }
    // The VANISHED (EARLIER) comes before the FETCHes and after the usual answers.
    let at = |want: &dyn Fn(&String) -> bool| lines.iter().position(want).expect("line");
    assert!(at(&|l| l.contains("VANISHED")) < at(&|l| l.contains(" FETCH ")));
    assert!(at(&|l| l.contains("[UIDNEXT ")) < at(&|l| l.contains("VANISHED")));
}

/// A new session with QRESYNC on, resynchronising INBOX from `modseq` over the UIDs 1:6.
fn resync_session(server: &Server, validity: u64, modseq: u64) -> (Client, Vec<String>) {
    let mut a = login(server);
    ok(&mut a, "e", "ENABLE QRESYNC");
    let select = format!("SELECT INBOX (QRESYNC ({validity} {modseq} 1:6))");
    let lines = ok(&mut a, "s", &select);
    (a, lines)
}

/// A SELECT answer without resync data: no VANISHED, no FETCH.
fn nothing_to_resync(lines: &[String]) -> bool {
    !lines
        .iter()
        .any(|l| l.contains("VANISHED") || l.contains(" FETCH "))
}

#[test]
fn quick_resync_returns_exactly_the_changes() {
    let spool = Spool::new();
    let (validity, m, highest_before_restart) = {
        let server = spool.start();
        let mut b = login(&server);
        append(&mut b, 6);
        // A syncs, notes the state, leaves.
        let mut a = login(&server);
        assert_eq!(ok(&mut a, "e", "ENABLE QRESYNC"), vec!["* ENABLED QRESYNC"]);
        let (validity, m) = select_state(&ok(&mut a, "s", "SELECT INBOX"));
        ok(&mut a, "o", "LOGOUT");
        // B changes flags on 2 and 4 and expunges 3 and 5.
        ok(&mut b, "s", "SELECT INBOX");
        ok(&mut b, "f1", "STORE 2 +FLAGS (\\Flagged)");
        ok(&mut b, "f2", "UID STORE 4 +FLAGS (\\Seen $Work)");
        ok(&mut b, "f3", "UID STORE 3,5 +FLAGS.SILENT (\\Deleted)");
        let gone = ok(&mut b, "x", "EXPUNGE");
        assert_eq!(
            gone,
            vec!["* 3 EXPUNGE", "* 4 EXPUNGE"],
            "B enabled nothing"
        );
        // A comes back and gets exactly the changes.
        let (mut a, lines) = resync_session(&server, validity, m);
        check_resync(&lines, m);
        // Nothing changed since the current HIGHESTMODSEQ: nothing to resync.
        let highest = code(&lines, "HIGHESTMODSEQ").expect("HIGHESTMODSEQ");
        let lines = ok(
            &mut a,
            "s2",
            &format!("EXAMINE INBOX (QRESYNC ({validity} {highest} 1:6))"),
        );
        assert_eq!(
            lines.first().map(String::as_str),
            Some("* OK [CLOSED] Previous mailbox closed")
        );
        assert!(nothing_to_resync(&lines), "{lines:?}");
        (validity, m, highest)
    };
    // Across a restart: the same answer, and HIGHESTMODSEQ never goes back.
    let server = spool.start();
    let (mut a, lines) = resync_session(&server, validity, m);
    check_resync(&lines, m);
    let highest = code(&lines, "HIGHESTMODSEQ").expect("HIGHESTMODSEQ");
    assert!(
        highest >= highest_before_restart,
        "{highest} < {highest_before_restart}"
    );
    let lines = ok(
        &mut a,
        "s2",
        &format!("SELECT INBOX (QRESYNC ({validity} {highest_before_restart} 1:6))"),
    );
    assert!(
        nothing_to_resync(&lines),
        "nothing changed across the restart: {lines:?}"
    );
    // Without known-uids, and with a mod-sequence from another history (above ours): a full
    // resync, VANISHED listing every UID that is not there.
    let foreign = highest + 1_000_000;
    let lines = ok(
        &mut a,
        "s3",
        &format!("SELECT INBOX (QRESYNC ({validity} {foreign}))"),
    );
    assert!(
        lines.contains(&"* VANISHED (EARLIER) 3,5".to_string()),
        "{lines:?}"
    );
    assert_eq!(fetches(&lines).len(), 4, "{lines:?}");
    // A seq-match-data that proves UIDs below 4 are all there leaves only 5 to report.
    let lines = ok(
        &mut a,
        "s4",
        &format!("SELECT INBOX (QRESYNC ({validity} {foreign} 1:6 (3 4)))"),
    );
    assert!(
        lines.contains(&"* VANISHED (EARLIER) 5".to_string()),
        "{lines:?}"
    );
    // Another UIDVALIDITY: a plain SELECT.
    let lines = ok(
        &mut a,
        "s5",
        &format!("SELECT INBOX (QRESYNC ({} {m} 1:6))", validity + 1),
    );
    assert!(nothing_to_resync(&lines), "{lines:?}");
}

#[test]
fn enable_select_parameters_and_status() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = login(&server);
    c.send(b"c CAPABILITY\r\n");
    let (caps, _) = c.until_tagged("c");
    assert!(caps[0].contains(" CONDSTORE QRESYNC "), "{caps:?}");
    append(&mut c, 2);
    // QRESYNC needs ENABLE QRESYNC first (RFC 7162 §3.2.3).
    assert!(
        c.run("q", "SELECT INBOX (QRESYNC (1 1))")
            .starts_with("q BAD"),
    );
    assert!(c.run("u", "SELECT INBOX (FROB)").starts_with("u BAD"));
    // No CONDSTORE enabling command yet: no HIGHESTMODSEQ.
    let lines = ok(&mut c, "s", "SELECT INBOX");
    assert_eq!(code(&lines, "HIGHESTMODSEQ"), None, "{lines:?}");
    // STATUS HIGHESTMODSEQ enables CONDSTORE.
    let lines = ok(&mut c, "t", "STATUS INBOX (MESSAGES HIGHESTMODSEQ)");
    let highest: u64 = lines[0]
        .strip_prefix("* STATUS \"INBOX\" (MESSAGES 2 HIGHESTMODSEQ ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    let lines = ok(&mut c, "s2", "EXAMINE INBOX");
    assert_eq!(lines[0], "* OK [CLOSED] Previous mailbox closed");
    assert_eq!(code(&lines, "HIGHESTMODSEQ"), Some(highest), "{lines:?}");
    let mut d = login(&server);
    let lines = ok(&mut d, "s", "SELECT INBOX (CONDSTORE)");
    assert_eq!(code(&lines, "HIGHESTMODSEQ"), Some(highest), "{lines:?}");
    assert_eq!(
        ok(&mut d, "e", "ENABLE CONDSTORE QRESYNC X-UNKNOWN"),
        vec!["* ENABLED CONDSTORE QRESYNC"]
    );
}

#[test]
fn conditional_store_and_changedsince() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = login(&server);
    append(&mut c, 3);
    ok(&mut c, "s", "SELECT INBOX");
    let lines = ok(&mut c, "f", "FETCH 1:3 (MODSEQ)");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("* 1 FETCH (MODSEQ ("), "{lines:?}");
    let m0 = lines.iter().map(|l| modseq_of(l)).max().expect("modseqs");
    // Message 1 changes; a conditional STORE on 1:3 since m0 leaves it alone.
    let lines = ok(&mut c, "a", "STORE 1 +FLAGS (\\Seen)");
    assert!(
        lines[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ ("),
        "{lines:?}"
    );
    c.send(format!("b STORE 1:3 (UNCHANGEDSINCE {m0}) +FLAGS (\\Flagged)\r\n").as_bytes());
    let (lines, tagged) = c.until_tagged("b");
    assert!(tagged.starts_with("b OK [MODIFIED 1] "), "{tagged}");
    let f = fetches(&lines);
    assert_eq!(f.len(), 2, "{lines:?}");
    assert!(
        f[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ("),
        "{f:?}"
    );
    assert!(modseq_of(f[0]) > m0);
    // UID STORE .SILENT still answers the new MODSEQ (§3.1.3), and MODIFIED lists UIDs.
    c.send(
        format!("d UID STORE 1,3 (UNCHANGEDSINCE {m0}) +FLAGS.SILENT (\\Answered)\r\n").as_bytes(),
    );
    let (lines, tagged) = c.until_tagged("d");
    assert!(tagged.starts_with("d OK [MODIFIED 1,3] "), "{tagged}");
    assert!(lines.is_empty(), "nothing stored: {lines:?}");
    let lines = ok(&mut c, "g", "UID FETCH 3 (MODSEQ)");
    let m3 = modseq_of(&lines[0]);
    c.send(
        format!("h UID STORE 3 (UNCHANGEDSINCE {m3}) +FLAGS.SILENT (\\Answered)\r\n").as_bytes(),
    );
    let (lines, tagged) = c.until_tagged("h");
    assert_eq!(tagged, "h OK STORE completed");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("* 3 FETCH (UID 3 MODSEQ ("),
        "{lines:?}"
    );
    let m4 = modseq_of(&lines[0]);
    assert!(m4 > m3);
    // UNCHANGEDSINCE 0 always fails.
    c.send(b"z STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)\r\n");
    assert!(c.until_tagged("z").1.starts_with("z OK [MODIFIED 1] "));
    // CHANGEDSINCE: only what changed after m3 (message 3), with MODSEQ implied.
    let lines = ok(
        &mut c,
        "i",
        &format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {m3})"),
    );
    assert_eq!(
        lines,
        vec![format!(
            "* 3 FETCH (FLAGS (\\Flagged \\Answered \\Recent) MODSEQ ({m4}))"
        )]
    );
    let lines = ok(
        &mut c,
        "j",
        &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m4})"),
    );
    assert!(lines.is_empty(), "{lines:?}");
    // VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE.
    for (tag, command) in [
        ("k1", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"),
        ("k2", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)(FROB)"),
        ("k3", "FETCH 1:* (FLAGS) (CHANGEDSINCE x)"),
    ] {
        assert!(
            c.run(tag, command).starts_with(&format!("{tag} BAD")),
            "{command}"
        );
    }
    ok(&mut c, "e", "ENABLE QRESYNC");
    assert!(
        c.run("k4", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            .starts_with("k4 BAD")
    );
    assert!(
        c.run("k5", "UID FETCH 1:* (FLAGS) (VANISHED)")
            .starts_with("k5 BAD")
    );
    // Expunge 2 from another session; UID FETCH VANISHED reports it once this session was told.
    let mut other = login(&server);
    ok(&mut other, "s", "SELECT INBOX");
    ok(&mut other, "x", "UID STORE 2 +FLAGS.SILENT (\\Deleted)");
    ok(&mut other, "y", "UID EXPUNGE 2");
    let lines = ok(&mut c, "n", "NOOP");
    assert!(lines.contains(&"* VANISHED 2".to_string()), "{lines:?}");
    let lines = ok(
        &mut c,
        "v",
        &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)"),
    );
    assert_eq!(lines[0], "* VANISHED (EARLIER) 2", "{lines:?}");
    assert_eq!(fetches(&lines).len(), 2, "{lines:?}");
    assert!(
        lines[1].starts_with("* 1 FETCH (UID 1 FLAGS ("),
        "{lines:?}"
    );
}

#[test]
fn search_sort_and_esearch_with_modseq() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = login(&server);
    append(&mut c, 4);
    ok(&mut c, "s", "SELECT INBOX");
    let lines = ok(&mut c, "f", "FETCH 1:4 (MODSEQ)");
    let modseqs: Vec<u64> = lines.iter().map(|l| modseq_of(l)).collect();
    let lines = ok(&mut c, "a", "STORE 2,4 +FLAGS (\\Seen)");
    let changed = modseq_of(&lines[0]);
    assert!(changed > modseqs[3]);
    let lines = ok(&mut c, "b", &format!("SEARCH MODSEQ {changed}"));
    assert_eq!(lines, vec![format!("* SEARCH 2 4 (MODSEQ {changed})")]);
    let lines = ok(
        &mut c,
        "c",
        &format!("UID SEARCH MODSEQ \"/flags/\\\\seen\" all {}", modseqs[2]),
    );
    assert_eq!(lines, vec![format!("* SEARCH 2 3 4 (MODSEQ {changed})")]);
    let lines = ok(&mut c, "d", &format!("SEARCH MODSEQ {}", changed + 1));
    assert_eq!(lines, vec!["* SEARCH"]);
    let lines = ok(
        &mut c,
        "e",
        &format!("UID SEARCH RETURN (ALL COUNT) MODSEQ {changed}"),
    );
    assert_eq!(
        lines,
        vec![format!(
            "* ESEARCH (TAG \"e\") UID COUNT 2 ALL 2,4 MODSEQ {changed}"
        )]
    );
    let lines = ok(
        &mut c,
        "g",
        &format!("SORT (REVERSE SUBJECT) UTF-8 MODSEQ {changed}"),
    );
    assert_eq!(lines, vec![format!("* SORT 4 2 (MODSEQ {changed})")]);
    // No MODSEQ criterion: the classic answer.
    assert_eq!(ok(&mut c, "h", "SEARCH SEEN"), vec!["* SEARCH 2 4"]);
}

#[test]
fn vanished_replaces_expunge_in_noop_and_idle_once_qresync_is_enabled() {
    let spool = Spool::new();
    let server = spool.start();
    let mut writer = login(&server);
    append(&mut writer, 6);
    ok(&mut writer, "s", "SELECT INBOX");
    let mut q = login(&server);
    ok(&mut q, "e", "ENABLE QRESYNC");
    ok(&mut q, "s", "SELECT INBOX");
    let mut plain = login(&server);
    ok(&mut plain, "s", "SELECT INBOX");

    ok(&mut writer, "a", "UID STORE 2,3 +FLAGS.SILENT (\\Deleted)");
    ok(&mut writer, "b", "UID STORE 6 +FLAGS.SILENT (\\Flagged)");
    ok(&mut writer, "x", "EXPUNGE");
    let lines = ok(&mut q, "n", "NOOP");
    let f = fetches(&lines);
    assert_eq!(f.len(), 1, "{lines:?}");
    assert!(
        f[0].starts_with("* 6 FETCH (UID 6 FLAGS (\\Flagged) MODSEQ ("),
        "{f:?}"
    );
    assert!(lines.contains(&"* VANISHED 2:3".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.ends_with("EXPUNGE")), "{lines:?}");
    // The client that enabled nothing: RFC 3501 answers, no MODSEQ.
    let lines = ok(&mut plain, "n", "NOOP");
    assert_eq!(
        lines,
        vec![
            "* 6 FETCH (FLAGS (\\Flagged))",
            "* 2 EXPUNGE",
            "* 2 EXPUNGE"
        ]
    );
    let lines = ok(&mut plain, "t", "STORE 1 +FLAGS (\\Seen)");
    assert_eq!(lines, vec!["* 1 FETCH (FLAGS (\\Seen))"]);

    // IDLE pushes VANISHED too.
    q.send(b"i IDLE\r\n");
    assert_eq!(q.line(), "+ idling");
    ok(&mut writer, "c", "UID STORE 4 +FLAGS.SILENT (\\Deleted)");
    ok(&mut writer, "y", "UID EXPUNGE 4");
    expect_line(&mut q, Duration::from_secs(5), |l| l == "* VANISHED 4");
    q.send(b"DONE\r\n");
    assert_eq!(q.until_tagged("i").1, "i OK IDLE terminated");
    // Our own EXPUNGE: VANISHED, and the new HIGHESTMODSEQ in the OK (§3.2.7).
    ok(&mut q, "d", "UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    q.send(b"x EXPUNGE\r\n");
    let (lines, tagged) = q.until_tagged("x");
    assert_eq!(lines, vec!["* VANISHED 1"]);
    assert!(tagged.starts_with("x OK [HIGHESTMODSEQ "), "{tagged}");
    // MOVE reports VANISHED as well.
    q.send(b"m UID MOVE 5 Trash\r\n");
    let (lines, tagged) = q.until_tagged("m");
    assert!(lines.contains(&"* VANISHED 5".to_string()), "{lines:?}");
    assert!(tagged.starts_with("m OK [HIGHESTMODSEQ "), "{tagged}");
}

#[test]
fn imapclient_drives_condstore_and_qresync() {
    common::ensure_python_module("imapclient", "imapclient");
    let spool = Spool::new();
    let server = spool.start();
    let out = server.python("condstore.py", &["carol", "carol-pw"]);
    assert!(out.contains("condstore checked"), "{out}");
}
