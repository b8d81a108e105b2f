//! IMAP4rev2 (RFC 9051) end to end, against the real binary: `ENABLE IMAP4rev2`, no `\Recent`
//! and no RECENT responses, SEARCH answered in ESEARCH form, SEARCHRES (`RETURN (SAVE)` and
//! `$`, for rev1 clients too), and UTF-8 mailbox names next to a rev1 client of the same user
//! who sees the same folders in modified UTF-7.

mod common;

use common::{Client, Server, Spool};

fn login(server: &Server) -> Client {
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c
}

/// Sends a command (raw bytes: names may be UTF-8); returns the untagged lines, asserting OK.
fn ok(c: &mut Client, tag: &str, command: &str) -> Vec<String> {
    c.send(format!("{tag} {command}\r\n").as_bytes());
    let (untagged, tagged) = c.until_tagged(tag);
    assert!(
        tagged.starts_with(&format!("{tag} OK")),
        "{command}: {tagged} after {untagged:?}"
    );
    untagged
}

/// Sends a command and returns the tagged answer, asserting it is BAD.
fn bad(c: &mut Client, tag: &str, command: &[u8]) -> String {
    let mut line = format!("{tag} ").into_bytes();
    line.extend_from_slice(command);
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    let (untagged, tagged) = c.until_tagged(tag);
    assert!(
        tagged.starts_with(&format!("{tag} BAD")),
        "{tagged} after {untagged:?}"
    );
    tagged
}

fn append(c: &mut Client, tag: &str, subject: &str) {
    let message = format!("Subject: {subject}\r\n\r\nbody\r\n");
    c.send(format!("{tag} APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
    let answer = c.until_tagged(tag).1;
    assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
}

fn rev2(server: &Server) -> Client {
    let mut c = login(server);
    let caps = ok(&mut c, "c", "CAPABILITY");
    assert!(
        caps[0].starts_with("* CAPABILITY IMAP4rev1 IMAP4rev2 ") && caps[0].contains(" SEARCHRES "),
        "{caps:?}"
    );
    assert_eq!(ok(&mut c, "e", "ENABLE IMAP4rev2"), ["* ENABLED IMAP4rev2"]);
    c
}

#[test]
fn rev2_session_has_no_recent_and_answers_esearch() {
    let spool = Spool::new();
    let server = spool.start();
    let mut v1 = login(&server);
    for i in 0..3 {
        append(&mut v1, &format!("a{i}"), &format!("m{i:02}"));
    }
    let mut v2 = rev2(&server);

    let select = ok(&mut v2, "s", "SELECT INBOX");
    assert!(select.contains(&"* 3 EXISTS".to_string()), "{select:?}");
    assert!(
        select.contains(&"* LIST () \".\" \"INBOX\"".to_string()),
        "{select:?}"
    );
    assert!(
        !select
            .iter()
            .any(|l| l.contains("RECENT") || l.contains("[UNSEEN")),
        "{select:?}"
    );
    let flags = ok(&mut v2, "f", "FETCH 1:* (FLAGS)");
    assert_eq!(flags.len(), 3, "{flags:?}");
    assert!(!flags.iter().any(|l| l.contains("\\Recent")), "{flags:?}");

    // A message arriving meanwhile: EXISTS, but no RECENT.
    append(&mut v1, "a3", "m03");
    let noop = ok(&mut v2, "n", "NOOP");
    assert_eq!(noop, ["* 4 EXISTS"]);

    // SEARCH is answered in ESEARCH form (RFC 9051 §6.4.4), UID SEARCH with UID.
    assert_eq!(
        ok(&mut v2, "q1", "SEARCH ALL"),
        ["* ESEARCH (TAG \"q1\") ALL 1:4"]
    );
    let uids = ok(&mut v2, "q2", "UID SEARCH SUBJECT m01");
    assert_eq!(uids.len(), 1, "{uids:?}");
    assert!(
        uids[0].starts_with("* ESEARCH (TAG \"q2\") UID ALL "),
        "{uids:?}"
    );
    assert_eq!(
        ok(&mut v2, "q3", "SEARCH SUBJECT nothing"),
        ["* ESEARCH (TAG \"q3\")"]
    );
    assert_eq!(
        ok(&mut v2, "q4", "SEARCH RETURN (COUNT) ALL"),
        ["* ESEARCH (TAG \"q4\") COUNT 4"]
    );
    // RECENT, NEW and OLD are gone from rev2, and so is STATUS RECENT.
    bad(&mut v2, "r1", b"SEARCH RECENT");
    bad(&mut v2, "r2", b"SEARCH NOT OLD");
    bad(&mut v2, "r3", b"STATUS INBOX (MESSAGES RECENT)");
    assert_eq!(
        ok(&mut v2, "st", "STATUS INBOX (MESSAGES DELETED)"),
        ["* STATUS \"INBOX\" (MESSAGES 4 DELETED 0)"]
    );

    // The rev1 client of the same user is unchanged.
    let select = ok(&mut v1, "s", "SELECT INBOX");
    assert!(select.iter().any(|l| l.ends_with(" RECENT")), "{select:?}");
    assert_eq!(ok(&mut v1, "q", "SEARCH ALL"), ["* SEARCH 1 2 3 4"]);

    // IDLE pushes arrivals without RECENT to the rev2 session.
    v2.send(b"i IDLE\r\n");
    assert_eq!(v2.line(), "+ idling");
    append(&mut v1, "a4", "m04");
    assert_eq!(v2.line(), "* 5 EXISTS");
    v2.send(b"DONE\r\n");
    let (rest, done) = v2.until_tagged("i");
    assert!(
        done.starts_with("i OK") && rest.is_empty(),
        "{rest:?} {done}"
    );

    // ENABLE IMAP4rev2 with a mailbox selected takes effect at once: no more \Recent.
    let before = ok(&mut v1, "f1", "FETCH 5 (FLAGS)");
    assert!(before[0].contains("\\Recent"), "{before:?}");
    assert_eq!(
        ok(&mut v1, "e", "ENABLE IMAP4rev2"),
        ["* ENABLED IMAP4rev2"]
    );
    assert_eq!(
        ok(&mut v1, "f2", "FETCH 5 (FLAGS)"),
        ["* 5 FETCH (FLAGS ())"]
    );
}

#[test]
fn searchres_saves_and_reuses_results() {
    let spool = Spool::new();
    let server = spool.start();
    let mut v2 = rev2(&server);
    for i in 0..4 {
        append(&mut v2, &format!("a{i}"), &format!("m{i:02}"));
    }
    ok(&mut v2, "s", "SELECT INBOX");
    let uid_of_3 = ok(&mut v2, "u", "FETCH 3 (UID)")[0]
        .split("UID ")
        .nth(1)
        .and_then(|r| r.trim_end_matches(')').parse::<u32>().ok())
        .expect("UID of message 3");

    // SAVE alone: no ESEARCH response (RFC 5182 §2.4).
    assert!(ok(&mut v2, "q", "SEARCH RETURN (SAVE) SUBJECT m02").is_empty());
    assert_eq!(
        ok(&mut v2, "f", "FETCH $ (UID)"),
        [format!("* 3 FETCH (UID {uid_of_3})")]
    );
    let stored = ok(&mut v2, "t", "UID STORE $ +FLAGS (\\Flagged)");
    assert_eq!(
        stored,
        [format!("* 3 FETCH (UID {uid_of_3} FLAGS (\\Flagged))")]
    );
    assert_eq!(
        ok(&mut v2, "q2", "SEARCH FLAGGED"),
        ["* ESEARCH (TAG \"q2\") ALL 3"]
    );
    assert_eq!(
        ok(&mut v2, "q3", "UID SEARCH $"),
        [format!("* ESEARCH (TAG \"q3\") UID ALL {uid_of_3}")]
    );
    // SAVE with MIN keeps only the minimum; the answer is as without SAVE.
    assert_eq!(
        ok(&mut v2, "q4", "SEARCH RETURN (SAVE MIN) SUBJECT m0"),
        ["* ESEARCH (TAG \"q4\") MIN 1"]
    );
    assert_eq!(
        ok(&mut v2, "f2", "FETCH $ (FLAGS)"),
        ["* 1 FETCH (FLAGS ())"]
    );
    // COPY $ and a reselect, which empties `$` (RFC 5182 §2.1).
    ok(&mut v2, "cr", "CREATE Kept");
    ok(&mut v2, "c", "COPY $ Kept");
    assert_eq!(
        ok(&mut v2, "sa", "STATUS Kept (MESSAGES)"),
        ["* STATUS \"Kept\" (MESSAGES 1)"]
    );
    ok(&mut v2, "s2", "SELECT INBOX");
    assert!(ok(&mut v2, "f3", "FETCH $ (UID)").is_empty());

    // A rev1 client may use SEARCHRES too; its plain SEARCH answers stay `* SEARCH`.
    let mut v1 = login(&server);
    ok(&mut v1, "s", "SELECT INBOX");
    assert!(ok(&mut v1, "q", "SEARCH RETURN (SAVE) SUBJECT m01").is_empty());
    let fetched = ok(&mut v1, "f", "FETCH $ (FLAGS)");
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].starts_with("* 2 FETCH (FLAGS ("), "{fetched:?}");
    assert_eq!(ok(&mut v1, "q2", "SEARCH $"), ["* SEARCH 2"]);
    // A failed SEARCH ... SAVE empties `$` (RFC 5182 §2.1).
    let refused = v1.run("q3", "SEARCH RETURN (SAVE) CHARSET KOI8-R SUBJECT x");
    assert!(refused.starts_with("q3 NO [BADCHARSET"), "{refused}");
    assert_eq!(ok(&mut v1, "q4", "SEARCH $"), ["* SEARCH"]);
    // SORT cannot save.
    bad(&mut v1, "so", b"SORT RETURN (SAVE) (DATE) UTF-8 ALL");
}

#[test]
fn utf8_mailbox_names_in_rev2_and_modified_utf7_in_rev1() {
    let spool = Spool::new();
    let server = spool.start();
    let mut v2 = rev2(&server);
    let mut v1 = login(&server);

    ok(&mut v2, "c1", "CREATE \"Entwürfe\"");
    // The rev1 client sees the same folder in modified UTF-7 and can create below it.
    let listed = ok(&mut v1, "l1", "LIST \"\" \"Entw*\"");
    assert_eq!(listed, ["* LIST (\\HasNoChildren) \".\" \"Entw&APw-rfe\""]);
    ok(&mut v1, "c2", "CREATE \"Entw&APw-rfe.&kAFP4Q-\"");
    let listed = ok(&mut v2, "l2", "LIST \"\" \"Entw*\"");
    assert_eq!(
        listed,
        [
            "* LIST (\\HasChildren) \".\" \"Entwürfe\"",
            "* LIST (\\HasNoChildren) \".\" \"Entwürfe.送信\"",
        ]
    );
    // A name that is only a parent: `\NonExistent` in rev2, `\Noselect` in rev1.
    // (hato creates parents itself; Dovecot and other Maildir++ writers do not.)
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(spool.path().join("mail/carol/.Projekt.Alpha").join(sub))
            .expect("a folder made by another program");
    }
    let listed = ok(&mut v2, "p2", "LIST \"\" \"Projekt\"");
    assert_eq!(
        listed,
        ["* LIST (\\NonExistent \\HasChildren) \".\" \"Projekt\""]
    );
    let listed = ok(&mut v1, "p1", "LIST \"\" \"Projekt\"");
    assert_eq!(
        listed,
        ["* LIST (\\Noselect \\HasChildren) \".\" \"Projekt\""]
    );
    // An extended LIST, STATUS and SELECT speak UTF-8 too.
    let listed = ok(
        &mut v2,
        "l3",
        "LIST \"\" \"Entw*\" RETURN (STATUS (MESSAGES))",
    );
    assert_eq!(
        listed,
        [
            "* LIST (\\HasChildren) \".\" \"Entwürfe\"",
            "* STATUS \"Entwürfe\" (MESSAGES 0)",
            "* LIST (\\HasNoChildren) \".\" \"Entwürfe.送信\"",
            "* STATUS \"Entwürfe.送信\" (MESSAGES 0)",
        ]
    );
    ok(&mut v2, "sb", "SUBSCRIBE \"Entwürfe.送信\"");
    assert_eq!(
        ok(&mut v2, "ls", "LSUB \"\" \"Entw*\""),
        ["* LSUB (\\HasNoChildren) \".\" \"Entwürfe.送信\""]
    );
    assert_eq!(
        ok(&mut v1, "ls", "LSUB \"\" \"Entw*\""),
        ["* LSUB (\\HasNoChildren) \".\" \"Entw&APw-rfe.&kAFP4Q-\""]
    );
    assert_eq!(
        ok(&mut v2, "st", "STATUS \"Entwürfe\" (MESSAGES)"),
        ["* STATUS \"Entwürfe\" (MESSAGES 0)"]
    );
    let select = ok(&mut v2, "se", "EXAMINE \"Entwürfe.送信\"");
    assert!(
        select.contains(&"* LIST () \".\" \"Entwürfe.送信\"".to_string()),
        "{select:?}"
    );
    // In UTF-8 mode `&` is an ordinary character: `&AOk-` is a folder of that name, which a
    // rev1 client sees as `&-AOk-`.
    ok(&mut v2, "c3", "CREATE \"&AOk-\"");
    assert_eq!(
        ok(&mut v1, "l4", "LIST \"\" \"&-*\""),
        ["* LIST (\\HasNoChildren) \".\" \"&-AOk-\""]
    );
    // Invalid UTF-8 and control characters are refused with BAD; the session goes on.
    bad(&mut v2, "b1", b"CREATE \"caf\xc3\"");
    bad(&mut v2, "b2", b"CREATE \"a\xc2\x85b\"");
    ok(&mut v2, "rn", "RENAME \"Entwürfe.送信\" \"Gesendet\"");
    assert_eq!(
        ok(&mut v1, "l5", "LIST \"\" \"G*\""),
        ["* LIST (\\HasNoChildren) \".\" \"Gesendet\""]
    );
    // The rev1 client still refuses 8-bit names (modified UTF-7 expected).
    bad(&mut v1, "b3", "CREATE \"Entwürfe2\"".as_bytes());
}
