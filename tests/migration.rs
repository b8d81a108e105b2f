//! A Maildir written by Dovecot (with its dovecot-uidlist and dovecot-keywords) is served by hato
//! with the same UIDVALIDITY, UIDs, flags and keywords, so clients do not resynchronise.

mod common;

use common::dovecot::{self, Dovecot};
use common::{Client, Spool};

/// Fills a mailbox through IMAP: 6 messages with flags and a keyword, two expunged (so the UIDs
/// have a gap), in INBOX and in a folder.
fn populate(c: &mut Client) {
    assert!(c.run("c", "CREATE Projects").starts_with("c OK"));
    for (i, (mailbox, flags)) in [
        ("INBOX", "(\\Seen)"),
        ("INBOX", "(\\Flagged $Work)"),
        ("INBOX", "()"),
        ("INBOX", "(\\Answered \\Seen)"),
        ("INBOX", "(\\Draft)"),
        ("Projects", "($Work \\Seen)"),
    ]
    .iter()
    .enumerate()
    {
        let body =
            format!("Subject: message {i}\r\nMessage-ID: <{i}@example.com>\r\n\r\nbody {i}\r\n");
        c.send(
            format!(
                "a{i} APPEND {mailbox} {flags} {{{}+}}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let answer = c.until_tagged(&format!("a{i}")).1;
        assert!(answer.contains(" OK"), "{answer}");
    }
    assert!(c.run("s", "SELECT INBOX").contains(" OK"));
    assert!(
        c.run("d", "UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
            .contains(" OK")
    );
    assert!(c.run("e", "EXPUNGE").contains(" OK"));
}

/// UIDVALIDITY, UIDNEXT and `UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`
/// of a mailbox, as lines; `\Recent` is left out (it belongs to sessions, not messages).
fn state(c: &mut Client, mailbox: &str) -> Vec<String> {
    c.send(format!("x EXAMINE {mailbox}\r\n").as_bytes());
    let (untagged, tagged) = c.until_tagged("x");
    assert!(tagged.contains(" OK"), "{tagged}");
    let mut lines: Vec<String> = untagged
        .into_iter()
        .filter(|l| l.starts_with("* OK [UIDVALIDITY") || l.starts_with("* OK [UIDNEXT"))
        .map(|l| l.split(']').next().unwrap_or_default().to_string())
        .collect();
    c.send(b"y UID FETCH 1:* (UID FLAGS)\r\n");
    let (untagged, _) = c.until_tagged("y");
    for line in untagged {
        // "* n FETCH (UID u FLAGS (...))" or "(FLAGS (...) UID u)": normalise to uid + sorted flags.
        let uid = line
            .split("UID ")
            .nth(1)
            .and_then(|r| r.split([' ', ')']).next())
            .unwrap_or_default()
            .to_string();
        let flags = line
            .split("FLAGS (")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_default();
        let mut flags: Vec<&str> = flags
            .split(' ')
            .filter(|f| !f.is_empty() && *f != "\\Recent")
            .collect();
        flags.sort_unstable();
        lines.push(format!("uid {uid} flags {}", flags.join(" ")));
    }
    lines
}

#[test]
fn a_dovecot_maildir_keeps_its_uids_and_flags() {
    let dovecot = Dovecot::start();
    let mut c = Client::connect(dovecot.imap);
    assert!(
        c.run(
            "l",
            &format!("LOGIN {} {}", dovecot::USER, dovecot::PASSWORD)
        )
        .contains(" OK"),
        "login to Dovecot"
    );
    populate(&mut c);
    let inbox = state(&mut c, "INBOX");
    let projects = state(&mut c, "Projects");
    assert_eq!(inbox.len(), 2 + 3, "{inbox:?}");
    c.run("z", "LOGOUT");
    drop(c);
    assert!(dovecot.maildir.join("dovecot-uidlist").exists());

    // Move the Maildir under hato's spool for user carol, as a migration would.
    let spool = Spool::new();
    let target = spool.path().join("mail/carol");
    std::fs::create_dir_all(spool.path().join("mail")).expect("mail dir");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&dovecot.maildir)
        .arg(&target)
        .status()
        .expect("cp");
    assert!(status.success());
    drop(dovecot);
    let server = spool.start();
    let mut h = server.connect();
    assert!(h.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    assert_eq!(
        state(&mut h, "INBOX"),
        inbox,
        "INBOX differs after migration"
    );
    assert_eq!(
        state(&mut h, "Projects"),
        projects,
        "Projects differs after migration"
    );
    // And the next UID continues Dovecot's sequence.
    h.send(b"a APPEND INBOX {19+}\r\nSubject: m9\r\n\r\nbody\r\n");
    let answer = h.until_tagged("a").1;
    let validity = inbox[0].trim_start_matches("* OK [UIDVALIDITY ");
    assert!(
        answer.contains(&format!("[APPENDUID {validity} 6]")),
        "{answer} / {inbox:?}"
    );
}
