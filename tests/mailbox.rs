//! End-to-end tests of the Maildir store and the IMAP4rev1 mailbox and message commands.

mod common;

use common::Spool;

#[test]
fn imapclient_drives_every_mailbox_command() {
    common::ensure_python_module("imapclient", "imapclient");
    let spool = Spool::new();
    let server = spool.start();
    let out = server.python("mailbox_commands.py", &["carol", "carol-pw"]);
    assert!(out.contains("all mailbox commands checked"), "{out}");
}

#[test]
fn uids_flags_and_uidvalidity_survive_a_restart() {
    let spool = Spool::new();
    let (validity, listing) = {
        let server = spool.start();
        let mut c = server.connect();
        assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
        for i in 0..3 {
            c.send(
                format!("a{i} APPEND INBOX (\\Flagged) {{19+}}\r\nSubject: m{i}\r\n\r\nbody\r\n")
                    .as_bytes(),
            );
            let answer = c.until_tagged(&format!("a{i}")).1;
            assert!(answer.contains("[APPENDUID "), "{answer}");
        }
        c.send(b"s SELECT INBOX\r\n");
        let (untagged, tagged) = c.until_tagged("s");
        assert!(tagged.starts_with("s OK [READ-WRITE]"), "{tagged}");
        let validity = untagged
            .iter()
            .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
            .and_then(|r| r.split(']').next())
            .expect("UIDVALIDITY")
            .to_string();
        assert!(
            c.run("d", "UID STORE 2 +FLAGS (\\Deleted \\Seen)")
                .starts_with("d OK")
        );
        assert!(c.run("e", "EXPUNGE").starts_with("e OK"));
        c.send(b"f UID FETCH 1:* (FLAGS)\r\n");
        let (listing, _) = c.until_tagged("f");
        (validity, listing)
    };
    assert_eq!(listing.len(), 2, "{listing:?}");
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c.send(b"s SELECT INBOX\r\n");
    let (untagged, _) = c.until_tagged("s");
    assert!(
        untagged.contains(&format!("* OK [UIDVALIDITY {validity}] UIDs valid")),
        "{untagged:?}"
    );
    assert!(
        untagged.contains(&"* OK [UIDNEXT 4] Predicted next UID".to_string()),
        "{untagged:?}"
    );
    c.send(b"f UID FETCH 1:* (FLAGS)\r\n");
    let (again, _) = c.until_tagged("f");
    assert_eq!(again, listing, "UIDs and flags changed across the restart");
    // The expunged UID is never reused.
    c.send(b"a APPEND INBOX {19+}\r\nSubject: m9\r\n\r\nbody\r\n");
    let answer = c.until_tagged("a").1;
    assert!(
        answer.contains(&format!("[APPENDUID {validity} 4]")),
        "{answer}"
    );
}

#[test]
fn a_message_dropped_into_new_is_seen_at_check() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c.send(b"s SELECT INBOX\r\n");
    let (untagged, _) = c.until_tagged("s");
    assert!(untagged.contains(&"* 0 EXISTS".to_string()), "{untagged:?}");
    let new = spool.path().join("mail/carol/new/1700000000.M1P1.test");
    std::fs::write(&new, "Subject: dropped\r\n\r\nhi\r\n").expect("drop a message");
    c.send(b"c CHECK\r\n");
    let (untagged, tagged) = c.until_tagged("c");
    assert_eq!(tagged, "c OK CHECK completed");
    assert!(untagged.contains(&"* 1 EXISTS".to_string()), "{untagged:?}");
    c.send(b"f FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    let (untagged, _) = c.until_tagged("f");
    assert!(
        untagged[0].starts_with("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {"),
        "{untagged:?}"
    );
    // A local MDA writes bare LF line ends: RFC822.SIZE must still equal what BODY[] sends.
    let lf = spool.path().join("mail/carol/new/1700000001.M2P1.test");
    std::fs::write(&lf, "Subject: lf\n\nline one\nline two\n").expect("drop a message");
    assert_eq!(c.run("c2", "CHECK"), "c2 OK CHECK completed");
    c.send(b"g FETCH 2 (RFC822.SIZE BODY.PEEK[])\r\n");
    let head = c.line();
    assert_eq!(head, "* 2 FETCH (RFC822.SIZE 35 BODY[] {35}", "{head}");
    assert_eq!(c.bytes(35), b"Subject: lf\r\n\r\nline one\r\nline two\r\n");
    assert_eq!(c.line(), ")");
    assert_eq!(c.until_tagged("g").1, "g OK FETCH completed");
}

#[test]
fn two_sessions_see_each_others_changes_at_noop() {
    let spool = Spool::new();
    let server = spool.start();
    let mut a = server.connect();
    let mut b = server.connect();
    for c in [&mut a, &mut b] {
        assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    }
    a.send(b"x APPEND INBOX {19+}\r\nSubject: m1\r\n\r\nbody\r\n");
    assert!(a.until_tagged("x").1.starts_with("x OK"));
    for c in [&mut a, &mut b] {
        assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    }
    assert!(
        a.run("t", "STORE 1 +FLAGS.SILENT (\\Flagged)")
            .starts_with("t OK")
    );
    b.send(b"n NOOP\r\n");
    let (untagged, _) = b.until_tagged("n");
    assert_eq!(untagged, vec!["* 1 FETCH (FLAGS (\\Flagged))".to_string()]);
    a.send(b"y APPEND INBOX {19+}\r\nSubject: m2\r\n\r\nbody\r\n");
    assert!(a.until_tagged("y").1.starts_with("y OK"));
    b.send(b"n2 NOOP\r\n");
    let (untagged, _) = b.until_tagged("n2");
    assert!(untagged.contains(&"* 2 EXISTS".to_string()), "{untagged:?}");
    assert!(
        a.run("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            .starts_with("d OK")
    );
    assert!(a.run("e", "EXPUNGE").starts_with("e OK"));
    // b is told of the expunge at NOOP, but not during FETCH.
    b.send(b"f FETCH 1:2 (UID)\r\n");
    let (untagged, _) = b.until_tagged("f");
    assert!(
        !untagged.iter().any(|l| l.ends_with("EXPUNGE")),
        "{untagged:?}"
    );
    b.send(b"n3 NOOP\r\n");
    let (untagged, _) = b.until_tagged("n3");
    assert!(
        untagged.contains(&"* 1 EXPUNGE".to_string()),
        "{untagged:?}"
    );
}

#[test]
fn copy_and_move_answer_copyuid() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    for i in 0..3 {
        c.send(format!("a{i} APPEND INBOX {{19+}}\r\nSubject: m{i}\r\n\r\nbody\r\n").as_bytes());
        c.until_tagged(&format!("a{i}"));
    }
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    let validity = {
        c.send(b"st STATUS Archive (UIDVALIDITY)\r\n");
        let (untagged, _) = c.until_tagged("st");
        untagged[0]
            .trim_end_matches(')')
            .rsplit(' ')
            .next()
            .expect("validity")
            .to_string()
    };
    assert_eq!(
        c.run("c", "COPY 1:2 Archive"),
        format!("c OK [COPYUID {validity} 1:2 1:2] COPY completed")
    );
    c.send(b"m UID MOVE 3 Archive\r\n");
    let (untagged, tagged) = c.until_tagged("m");
    assert_eq!(tagged, "m OK MOVE completed");
    assert_eq!(
        untagged,
        vec![
            format!("* OK [COPYUID {validity} 3 3] Moved"),
            "* 3 EXPUNGE".to_string()
        ]
    );
    assert!(c.run("t", "COPY 1 Nowhere").starts_with("t NO [TRYCREATE]"));
}

#[test]
fn large_messages_are_fetched_intact() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    // 3 MiB: mapped from the page cache and streamed to the socket by the server.
    let mut message = b"Subject: big\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let mut i = 0u32;
    while message.len() < 3 << 20 {
        message.extend_from_slice(format!("line {i:08} of a large message body\r\n").as_bytes());
        i += 1;
    }
    c.send(format!("a APPEND INBOX {{{}+}}\r\n", message.len()).as_bytes());
    c.send(&message);
    c.send(b"\r\n");
    assert!(c.until_tagged("a").1.starts_with("a OK"));
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    let body = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 4;
    for (command, expected) in [
        ("f1 FETCH 1 (BODY.PEEK[])", &message[..]),
        (
            "f2 FETCH 1 (BODY.PEEK[TEXT]<100.200000>)",
            &message[body + 100..body + 100 + 200_000],
        ),
    ] {
        c.send(format!("{command}\r\n").as_bytes());
        let head = c.line();
        let size: usize = head
            .rsplit('{')
            .next()
            .and_then(|n| n.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no literal in {head:?}"));
        assert_eq!(size, expected.len(), "{head}");
        assert!(c.bytes(size) == expected, "content differs for {command}");
        assert_eq!(c.line(), ")");
        let tag = &command[..2];
        assert_eq!(c.until_tagged(tag).1, format!("{tag} OK FETCH completed"));
    }
}

#[test]
fn curl_appends_lists_and_fetches() {
    common::ensure_command("curl", "curl");
    let spool = Spool::new();
    let server = spool.start();
    let base = format!("imap://{}", server.imap);
    let message = spool.path().join("upload.eml");
    std::fs::write(&message, "Subject: via curl\r\n\r\nhello from curl\r\n").expect("write");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "20",
                "--user",
                "carol:carol-pw",
            ])
            .args(args)
            .output()
            .expect("run curl (install Debian's curl)");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&[
        "--url",
        &format!("{base}/INBOX"),
        "-T",
        message.to_str().expect("utf-8"),
    ]);
    let listing = curl(&["--url", &format!("{base}/")]);
    assert!(
        listing.contains("* LIST (\\HasNoChildren \\Sent) \".\" \"Sent\""),
        "{listing}"
    );
    let fetched = curl(&["--url", &format!("{base}/INBOX;UID=1")]);
    assert_eq!(fetched, "Subject: via curl\r\n\r\nhello from curl\r\n");
}

#[test]
fn literal8_append_keeps_nul_bytes_for_binary_fetch() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    let message = b"Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\na\0b\r\n";
    c.send(format!("a APPEND INBOX ~{{{}+}}\r\n", message.len()).as_bytes());
    c.send(message);
    c.send(b"\r\n");
    assert!(c.until_tagged("a").1.starts_with("a OK [APPENDUID"));
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    c.send(b"f FETCH 1 (BINARY.PEEK[1])\r\n");
    assert_eq!(c.line(), "* 1 FETCH (BINARY[1] ~{5}");
    assert_eq!(c.bytes(5), b"a\0b\r\n");
    assert_eq!(c.line(), ")");
    assert_eq!(c.until_tagged("f").1, "f OK FETCH completed");
}
