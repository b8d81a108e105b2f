//! LIST-EXTENDED (RFC 5258) with SPECIAL-USE (RFC 6154 §2), LIST-STATUS (RFC 5819),
//! CREATE-SPECIAL-USE (RFC 6154 §3) and MULTIAPPEND (RFC 3502), end to end against the real
//! binary; plus imapclient's `multiappend`, `list_folders` and raw extended commands
//! (tests/py/list_extended.py).

mod common;

use common::{Client, Spool};

fn login(c: &mut Client) {
    let answer = c.run("l", "LOGIN carol carol-pw");
    assert!(answer.starts_with("l OK"), "{answer}");
}

/// Sends `<tag> <command>\r\n` and returns (untagged lines, tagged line).
fn exchange(c: &mut Client, tag: &str, command: &str) -> (Vec<String>, String) {
    c.send(format!("{tag} {command}\r\n").as_bytes());
    c.until_tagged(tag)
}

fn message(subject: &str) -> String {
    format!("From: a@example.com\r\nSubject: {subject}\r\n\r\nBody of {subject}.\r\n")
}

/// `MESSAGES n` of a STATUS answer for `mailbox`.
fn messages_in(c: &mut Client, mailbox: &str) -> u32 {
    let (untagged, tagged) = exchange(c, "st", &format!("STATUS {mailbox} (MESSAGES)"));
    assert!(tagged.starts_with("st OK"), "{tagged}");
    untagged
        .iter()
        .find_map(|l| l.split("(MESSAGES ").nth(1))
        .and_then(|r| r.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no MESSAGES in {untagged:?}"))
}

#[test]
fn capabilities_after_login() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    let answer = c.run("l", "LOGIN carol carol-pw");
    for cap in [
        " LIST-EXTENDED ",
        " LIST-STATUS ",
        " CREATE-SPECIAL-USE ",
        " MULTIAPPEND ",
        " SPECIAL-USE ",
    ] {
        assert!(answer.contains(cap), "{cap} missing: {answer}");
    }
}

#[test]
fn multiappend_stores_all_with_one_appenduid() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    login(&mut c);
    // LITERAL+, with flags and a date on the first message and flags only on the second.
    let (m1, m2, m3) = (message("one"), message("two"), message("three"));
    c.send(
        format!(
            "a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {{{}+}}\r\n{m1} \
             (\\Flagged $Work) {{{}+}}\r\n{m2} {{{}+}}\r\n{m3}\r\n",
            m1.len(),
            m2.len(),
            m3.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("a");
    assert!(tagged.starts_with("a OK [APPENDUID "), "{tagged}");
    assert!(tagged.contains(" 1:3] "), "one UID set for all: {tagged}");
    // Synchronizing literals: a continuation for each.
    let (m4, m5) = (message("four"), message("five"));
    c.send(format!("b APPEND INBOX {{{}}}\r\n", m4.len()).as_bytes());
    assert!(c.line().starts_with("+ "));
    c.send(format!("{m4} () {{{}}}\r\n", m5.len()).as_bytes());
    assert!(c.line().starts_with("+ "));
    c.send(format!("{m5}\r\n").as_bytes());
    let (_, tagged) = c.until_tagged("b");
    assert!(tagged.contains(" 4:5] "), "{tagged}");

    let (untagged, _) = exchange(&mut c, "s", "SELECT INBOX");
    assert!(untagged.contains(&"* 5 EXISTS".to_string()), "{untagged:?}");
    let (untagged, _) = exchange(&mut c, "f", "UID FETCH 1:3 (FLAGS INTERNALDATE)");
    assert!(untagged[0].contains("\\Seen"), "{untagged:?}");
    assert!(
        untagged[0].contains("01-Jan-2024 10:00:00 +0000"),
        "{untagged:?}"
    );
    assert!(
        untagged[1].contains("\\Flagged") && untagged[1].contains("$Work"),
        "{untagged:?}"
    );
    let (untagged, _) = exchange(
        &mut c,
        "g",
        "UID FETCH 3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
    );
    assert!(
        untagged.iter().any(|l| l == "Subject: three"),
        "{untagged:?}"
    );
    // Appending to the selected mailbox tells the session at once.
    let m6 = message("six");
    c.send(
        format!(
            "h APPEND INBOX {{{}+}}\r\n{m6} {{{}+}}\r\n{m6}\r\n",
            m6.len(),
            m6.len()
        )
        .as_bytes(),
    );
    let (untagged, tagged) = c.until_tagged("h");
    assert!(untagged.contains(&"* 7 EXISTS".to_string()), "{untagged:?}");
    assert!(tagged.contains(" 6:7] "), "{tagged}");
}

#[test]
fn multiappend_is_all_or_nothing() {
    let spool = Spool::new();
    spool.reg_set("MaxLiteralSize", "4096");
    // A whole command may hold one literal's worth plus a line: 5,120 bytes here.
    spool.reg_set("MaxLineLength", "1024");
    let server = spool.start();
    let mut c = server.connect();
    login(&mut c);
    let m = message("fine");
    // The second message's date is invalid: BAD, and the first is not stored either.
    c.send(
        format!(
            "a APPEND INBOX {{{}+}}\r\n{m} \"31-Feb-2024 99:00:00 +0000\" {{{}+}}\r\n{m}\r\n",
            m.len(),
            m.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("a");
    assert!(tagged.starts_with("a BAD"), "{tagged}");
    assert_eq!(messages_in(&mut c, "INBOX"), 0);

    // The second message is over MaxLiteralSize (LITERAL+): NO [TOOBIG], the rest of the
    // command is swallowed, nothing is stored, and the session goes on.
    let big = "x".repeat(5000);
    c.send(
        format!(
            "b APPEND INBOX {{{}+}}\r\n{m} {{{}+}}\r\n{big}\r\n",
            m.len(),
            big.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("b");
    assert!(tagged.starts_with("b NO [TOOBIG]"), "{tagged}");
    assert_eq!(messages_in(&mut c, "INBOX"), 0);
    // Synchronizing: refused instead of a continuation for the second literal.
    c.send(format!("c APPEND INBOX {{{}}}\r\n", m.len()).as_bytes());
    assert!(c.line().starts_with("+ "));
    c.send(format!("{m} {{{}}}\r\n", big.len()).as_bytes());
    let (_, tagged) = c.until_tagged("c");
    assert!(tagged.starts_with("c NO [TOOBIG]"), "{tagged}");
    assert_eq!(messages_in(&mut c, "INBOX"), 0);
    // Each literal fits, but the command as a whole is more than one literal's worth.
    let part = "y".repeat(3000);
    c.send(
        format!(
            "d APPEND INBOX {{{}+}}\r\n{part} {{{}+}}\r\n{part} {{{}+}}\r\n{part}\r\n",
            part.len(),
            part.len(),
            part.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("d");
    assert!(tagged.starts_with("d NO [TOOBIG]"), "{tagged}");
    assert_eq!(messages_in(&mut c, "INBOX"), 0);

    // A failure while storing: the keywords of both messages together are more than a
    // Maildir folder holds (26), found only when the second message is placed.
    let first: Vec<String> = (0..20).map(|i| format!("$a{i}")).collect();
    let second: Vec<String> = (0..10).map(|i| format!("$b{i}")).collect();
    c.send(
        format!(
            "e APPEND INBOX ({}) {{{}+}}\r\n{m} ({}) {{{}+}}\r\n{m}\r\n",
            first.join(" "),
            m.len(),
            second.join(" "),
            m.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("e");
    assert!(tagged.starts_with("e NO"), "{tagged}");
    assert_eq!(messages_in(&mut c, "INBOX"), 0);
    let cur = spool.path().join("mail/carol/cur");
    let new = spool.path().join("mail/carol/new");
    let files = std::fs::read_dir(&cur).unwrap().count() + std::fs::read_dir(&new).unwrap().count();
    assert_eq!(files, 0, "no message file left behind");

    // A mailbox that does not exist: TRYCREATE, and nothing anywhere.
    c.send(
        format!(
            "f APPEND Nowhere {{{}+}}\r\n{m} {{{}+}}\r\n{m}\r\n",
            m.len(),
            m.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("f");
    assert!(tagged.starts_with("f NO [TRYCREATE]"), "{tagged}");
    // And then a good one still works, with UIDs from 1: nothing was used up.
    c.send(
        format!(
            "g APPEND INBOX {{{}+}}\r\n{m} {{{}+}}\r\n{m}\r\n",
            m.len(),
            m.len()
        )
        .as_bytes(),
    );
    let (_, tagged) = c.until_tagged("g");
    assert!(tagged.contains(" 1:2] "), "{tagged}");
}

#[test]
fn plain_list_and_lsub_are_unchanged() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    login(&mut c);
    let (untagged, tagged) = exchange(&mut c, "a", "LIST \"\" \"*\"");
    assert_eq!(tagged, "a OK LIST completed");
    assert_eq!(
        untagged,
        [
            "* LIST (\\HasNoChildren) \".\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Archive) \".\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \".\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \".\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \".\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \".\" \"Trash\"",
        ]
    );
    let (untagged, _) = exchange(&mut c, "b", "LSUB \"\" \"S%\"");
    assert_eq!(untagged, ["* LSUB (\\HasNoChildren \\Sent) \".\" \"Sent\""]);
    let (untagged, _) = exchange(&mut c, "c", "LIST \"\" \"\"");
    assert_eq!(untagged, ["* LIST (\\Noselect) \".\" \"\""]);
}

#[test]
fn extended_list_selection_and_return_options() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    login(&mut c);
    for cmd in [
        "CREATE Work.Projects",
        "SUBSCRIBE Work.Projects",
        "SUBSCRIBE Gone",
        "DELETE Work",
    ] {
        let (_, tagged) = exchange(&mut c, "p", cmd);
        assert!(tagged.starts_with("p OK"), "{cmd}: {tagged}");
    }
    // Several patterns; each name once.
    let (untagged, tagged) = exchange(&mut c, "a", "LIST \"\" (\"INBOX\" \"S*\" \"Sen%\")");
    assert_eq!(tagged, "a OK LIST completed");
    assert_eq!(
        untagged,
        [
            "* LIST (\\HasNoChildren) \".\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Sent) \".\" \"Sent\"",
        ]
    );
    // A parent that is not a mailbox is \NonExistent in an extended LIST.
    let (untagged, _) = exchange(&mut c, "b", "LIST \"\" \"Work*\" RETURN (CHILDREN)");
    assert_eq!(
        untagged,
        [
            "* LIST (\\NonExistent \\HasChildren) \".\" \"Work\"",
            "* LIST (\\HasNoChildren) \".\" \"Work.Projects\"",
        ]
    );
    // SUBSCRIBED: subscribed names, existing or not, with \Subscribed.
    let (untagged, _) = exchange(&mut c, "c", "LIST (SUBSCRIBED) \"\" \"*\"");
    assert!(
        untagged.contains(&"* LIST (\\NonExistent \\Subscribed) \".\" \"Gone\"".to_string()),
        "{untagged:?}"
    );
    assert!(
        untagged
            .contains(&"* LIST (\\Subscribed \\HasNoChildren) \".\" \"Work.Projects\"".to_string()),
        "{untagged:?}"
    );
    assert!(
        !untagged.iter().any(|l| l.ends_with("\"Work\"")),
        "{untagged:?}"
    );
    // RECURSIVEMATCH: "%" does not reach Work.Projects, so Work comes with CHILDINFO.
    let (untagged, _) = exchange(&mut c, "d", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"W%\"");
    assert_eq!(
        untagged,
        ["* LIST (\\NonExistent \\HasChildren) \".\" \"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]
    );
    let (_, tagged) = exchange(&mut c, "e", "LIST (RECURSIVEMATCH) \"\" \"*\"");
    assert!(tagged.starts_with("e BAD"), "{tagged}");
    let (_, tagged) = exchange(&mut c, "e2", "LIST (BOGUS) \"\" \"*\"");
    assert!(tagged.starts_with("e2 BAD"), "{tagged}");
    // SPECIAL-USE selection (RFC 6154 §2).
    let (untagged, _) = exchange(
        &mut c,
        "f",
        "LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE)",
    );
    assert_eq!(untagged.len(), 5, "{untagged:?}");
    assert!(
        untagged.iter().all(|l| l.contains("\\HasNoChildren \\")),
        "{untagged:?}"
    );
    // RETURN (SUBSCRIBED) on an unrestricted list.
    let (untagged, _) = exchange(&mut c, "g", "LIST \"\" \"%\" RETURN (SUBSCRIBED)");
    assert!(
        untagged.contains(&"* LIST (\\Subscribed \\HasNoChildren) \".\" \"INBOX\"".to_string()),
        "{untagged:?}"
    );
}

#[test]
fn list_status_answers_after_each_selectable_mailbox() {
    let spool = Spool::new();
    let server = spool.start();
    let mut a = server.connect();
    login(&mut a);
    let m = message("x");
    a.send(
        format!(
            "p APPEND INBOX (\\Seen) {{{}+}}\r\n{m} {{{}+}}\r\n{m}\r\n",
            m.len(),
            m.len()
        )
        .as_bytes(),
    );
    assert!(a.until_tagged("p").1.starts_with("p OK"));
    assert!(a.run("q", "CREATE Work.Projects").starts_with("q OK"));
    assert!(a.run("r", "DELETE Work").starts_with("r OK"));
    let (untagged, tagged) = exchange(
        &mut a,
        "a",
        "LIST \"\" (\"INBOX\" \"Work*\") RETURN (STATUS (MESSAGES UNSEEN SIZE))",
    );
    assert_eq!(tagged, "a OK LIST completed");
    let size = 2 * m.len();
    assert_eq!(
        untagged,
        [
            "* LIST (\\HasNoChildren) \".\" \"INBOX\"".to_string(),
            format!("* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1 SIZE {size})"),
            // Not selectable: no STATUS.
            "* LIST (\\NonExistent \\HasChildren) \".\" \"Work\"".to_string(),
            "* LIST (\\HasNoChildren) \".\" \"Work.Projects\"".to_string(),
            "* STATUS \"Work.Projects\" (MESSAGES 0 UNSEEN 0 SIZE 0)".to_string(),
        ]
    );
    // The selected mailbox's STATUS is what this session was told, not what another
    // session has done since (RFC 5819 §2).
    assert!(a.run("s", "SELECT INBOX").starts_with("s OK"));
    let mut b = server.connect();
    login(&mut b);
    b.send(format!("p APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes());
    assert!(b.until_tagged("p").1.starts_with("p OK"));
    let (untagged, _) = exchange(&mut b, "b", "LIST \"\" INBOX RETURN (STATUS (MESSAGES))");
    assert_eq!(untagged[1], "* STATUS \"INBOX\" (MESSAGES 3)");
    let (untagged, _) = exchange(
        &mut a,
        "c",
        "LIST \"\" INBOX RETURN (STATUS (MESSAGES UIDNEXT))",
    );
    assert_eq!(
        untagged[1], "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3)",
        "{untagged:?}"
    );
    let (untagged, _) = exchange(&mut a, "d", "NOOP");
    assert!(untagged.contains(&"* 3 EXISTS".to_string()), "{untagged:?}");
    let (untagged, _) = exchange(
        &mut a,
        "e",
        "LIST \"\" INBOX RETURN (STATUS (MESSAGES UIDNEXT HIGHESTMODSEQ))",
    );
    assert!(
        untagged[1].starts_with("* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4 HIGHESTMODSEQ "),
        "{untagged:?}"
    );
}

#[test]
fn create_special_use_survives_a_restart() {
    let spool = Spool::new();
    {
        let server = spool.start();
        let mut c = server.connect();
        login(&mut c);
        let answer = c.run("a", "CREATE \"Old mail\" (USE (\\Archive))");
        assert_eq!(answer, "a OK CREATE completed");
        let answer = c.run("b", "CREATE Stars (USE (\\Flagged))");
        assert!(answer.starts_with("b NO [USEATTR]"), "{answer}");
        let answer = c.run("c", "CREATE Both (USE (\\Sent \\Drafts))");
        assert!(answer.starts_with("c NO [USEATTR]"), "{answer}");
        let answer = c.run("d", "CREATE Odd (FOO (bar))");
        assert!(answer.starts_with("d BAD"), "{answer}");
        let answer = c.run("e", "CREATE Plain (USE ())");
        assert_eq!(answer, "e OK CREATE completed");
        let answer = c.run("f", "CREATE \"Old mail\" (USE (\\Junk))");
        assert!(answer.starts_with("f NO [ALREADYEXISTS]"), "{answer}");
        let (untagged, _) = exchange(&mut c, "g", "LIST \"\" \"*\"");
        assert!(
            !untagged
                .iter()
                .any(|l| l.contains("Stars") || l.contains("Both")),
            "{untagged:?}"
        );
        assert!(
            untagged.contains(&"* LIST (\\HasNoChildren) \".\" \"Plain\"".to_string()),
            "{untagged:?}"
        );
    }
    let server = spool.start();
    let mut c = server.connect();
    login(&mut c);
    let (untagged, _) = exchange(&mut c, "a", "LIST (SPECIAL-USE) \"\" \"*\"");
    assert!(
        untagged.contains(&"* LIST (\\HasNoChildren \\Archive) \".\" \"Old mail\"".to_string()),
        "{untagged:?}"
    );
    // The use goes with the folder on RENAME.
    assert!(c.run("b", "RENAME \"Old mail\" Attic").starts_with("b OK"));
    let (untagged, _) = exchange(&mut c, "c", "LIST \"\" Attic");
    assert_eq!(
        untagged,
        ["* LIST (\\HasNoChildren \\Archive) \".\" \"Attic\""]
    );
}

#[test]
fn imapclient_multiappend_and_extended_list() {
    common::ensure_python_module("imapclient", "imapclient");
    let spool = Spool::new();
    let server = spool.start();
    let out = server.python("list_extended.py", &["carol", "carol-pw"]);
    assert!(out.contains("list-extended checks passed"), "{out}");
}
