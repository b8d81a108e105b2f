//! QUOTA (RFC 9208) end to end: GETQUOTAROOT/GETQUOTA values, APPEND and COPY refused with
//! `[OVERQUOTA]` (COPY as a whole), EXPUNGE freeing space, LMTP `552 5.2.2` for the full
//! recipient only, a live change of `QuotaMessages.1`/`QuotaStorage.1`, a per-user
//! `quota_rule` in the passwd-file, usage surviving a restart and matching a recalculation,
//! and imapclient's `get_quota_root`/`get_quota`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Client, Spool};

fn login(server: &common::Server, user: &str, password: &str) -> Client {
    let mut client = server.connect();
    let ok = client.run("L", &format!("LOGIN {user} {password}"));
    assert!(ok.starts_with("L OK"), "login: {ok}");
    client
}

/// A message of exactly `size` bytes.
fn message(size: usize) -> String {
    let head = "Subject: quota\r\n\r\n";
    assert!(size >= head.len() + 2);
    format!("{head}{}\r\n", "x".repeat(size - head.len() - 2))
}

/// APPENDs a message of `size` bytes to `mailbox` (LITERAL+); returns the tagged answer.
fn append(client: &mut Client, mailbox: &str, size: usize) -> String {
    let body = message(size);
    client.run(
        "A",
        &format!("APPEND {mailbox} {{{}+}}\r\n{body}", body.len()),
    )
}

/// The untagged lines and the tagged answer of one command.
fn untagged(client: &mut Client, command: &str) -> (Vec<String>, String) {
    client.send(format!("Q {command}\r\n").as_bytes());
    client.until_tagged("Q")
}

/// The `* QUOTA` line of `GETQUOTA ""`.
fn quota(client: &mut Client) -> String {
    let (lines, tagged) = untagged(client, "GETQUOTA \"\"");
    assert!(tagged.starts_with("Q OK"), "{tagged}");
    lines
        .into_iter()
        .find(|l| l.starts_with("* QUOTA "))
        .expect("QUOTA line")
}

fn messages_in(client: &mut Client, mailbox: &str) -> usize {
    let (lines, tagged) = untagged(client, &format!("STATUS {mailbox} (MESSAGES)"));
    assert!(tagged.starts_with("Q OK"), "{tagged}");
    lines
        .iter()
        .find_map(|l| {
            l.split("(MESSAGES ")
                .nth(1)?
                .trim_end_matches(')')
                .parse()
                .ok()
        })
        .expect("MESSAGES")
}

/// Adds extra fields to `user`'s passwd-file line (which has only name and password).
fn set_extra_fields(spool: &Path, user: &str, extra: &str) {
    let path = spool.join("passwd");
    let text = fs::read_to_string(&path).expect("passwd");
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        if line.starts_with(&format!("{user}:")) {
            out.push_str("::::::");
            out.push_str(extra);
        }
        out.push('\n');
    }
    fs::write(&path, out).expect("write passwd");
}

#[test]
fn getquota_append_copy_expunge() {
    let spool = Spool::new();
    spool.reg_set("QuotaStorage", "2"); // 2 KiB
    spool.reg_set("QuotaMessages", "3");
    let server = spool.start();
    let mut c = login(&server, "carol", "carol-pw");

    let (lines, _) = untagged(&mut c, "CAPABILITY");
    assert!(
        lines[0].contains(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE"),
        "{lines:?}"
    );

    let (lines, tagged) = untagged(&mut c, "GETQUOTAROOT INBOX");
    assert!(tagged.starts_with("Q OK"), "{tagged}");
    assert_eq!(
        lines,
        [
            "* QUOTAROOT \"INBOX\" \"\"",
            "* QUOTA \"\" (STORAGE 0 2 MESSAGE 0 3)"
        ]
    );
    let (_, tagged) = untagged(&mut c, "GETQUOTAROOT Nonexistent");
    assert!(tagged.starts_with("Q NO [NONEXISTENT]"), "{tagged}");
    let (_, tagged) = untagged(&mut c, "GETQUOTA \"other\"");
    assert!(tagged.starts_with("Q NO [NONEXISTENT]"), "{tagged}");

    // Storage: 1000 + 1100 bytes would exceed 2048.
    assert!(append(&mut c, "INBOX", 1000).starts_with("A OK"));
    assert_eq!(quota(&mut c), "* QUOTA \"\" (STORAGE 1 2 MESSAGE 1 3)");
    let refused = append(&mut c, "INBOX", 1100);
    assert!(refused.starts_with("A NO [OVERQUOTA]"), "{refused}");
    assert_eq!(messages_in(&mut c, "INBOX"), 1, "nothing stored");
    // Messages: a fourth one is refused, in any folder.
    assert!(append(&mut c, "INBOX", 100).starts_with("A OK"));
    assert!(append(&mut c, "Drafts", 100).starts_with("A OK"));
    let refused = append(&mut c, "Sent", 100);
    assert!(refused.starts_with("A NO [OVERQUOTA]"), "{refused}");
    assert_eq!(messages_in(&mut c, "Sent"), 0);
    assert_eq!(quota(&mut c), "* QUOTA \"\" (STORAGE 2 2 MESSAGE 3 3)");

    // COPY is refused as a whole: nothing of it lands.
    assert!(c.run("S", "SELECT INBOX").starts_with("S OK"));
    let refused = c.run("P", "COPY 1:2 Archive");
    assert!(refused.starts_with("P NO [OVERQUOTA]"), "{refused}");
    assert_eq!(messages_in(&mut c, "Archive"), 0);
    // MOVE within the user's folders adds nothing, so it works at the limit (to Trash too,
    // which is how many clients delete).
    let moved = c.run("M", "MOVE 2 Trash");
    assert!(moved.starts_with("M OK"), "{moved}");
    assert_eq!(messages_in(&mut c, "Trash"), 1);
    assert_eq!(quota(&mut c), "* QUOTA \"\" (STORAGE 2 2 MESSAGE 3 3)");

    // EXPUNGE frees space, so the next APPEND works.
    assert!(
        c.run("F", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            .starts_with("F OK")
    );
    assert!(c.run("E", "EXPUNGE").starts_with("E OK"));
    assert_eq!(quota(&mut c), "* QUOTA \"\" (STORAGE 1 2 MESSAGE 2 3)");
    assert!(append(&mut c, "Sent", 500).starts_with("A OK"));
    // DELETE of a folder frees its messages too.
    assert!(c.run("D", "DELETE Drafts").starts_with("D OK"));
    assert_eq!(quota(&mut c), "* QUOTA \"\" (STORAGE 1 2 MESSAGE 2 3)");
    // Limits are the operator's: SETQUOTA is not offered (no QUOTASET) and not obeyed.
    let refused = c.run("X", "SETQUOTA \"\" (STORAGE 10)");
    assert!(!refused.starts_with("X OK"), "{refused}");
}

#[test]
fn live_reload_restart_and_recalculation() {
    let spool = Spool::new();
    spool.reg_set("QuotaMessages", "1");
    let server = spool.start();
    let mut c = login(&server, "carol", "carol-pw");
    assert!(append(&mut c, "INBOX", 300).starts_with("A OK"));
    assert!(append(&mut c, "INBOX", 300).starts_with("A NO [OVERQUOTA]"));

    // A live change applies without a restart (the reload takes about 100 ms).
    spool.reg_set("QuotaMessages", "5");
    spool.reg_set("QuotaStorage", "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = quota(&mut c);
        if line == "* QUOTA \"\" (STORAGE 1 1 MESSAGE 1 5)" {
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 300 + 800 > 1024 bytes now, 300 + 700 is not.
    assert!(append(&mut c, "INBOX", 800).starts_with("A NO [OVERQUOTA]"));
    assert!(append(&mut c, "Sent", 700).starts_with("A OK"));
    let before = quota(&mut c);
    assert_eq!(before, "* QUOTA \"\" (STORAGE 1 1 MESSAGE 2 5)");
    drop(c);
    drop(server);

    // The tracked usage is what a recalculation finds.
    let maildirsize = spool.path().join("mail/carol/maildirsize");
    let text = fs::read_to_string(&maildirsize).expect("maildirsize");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1024S,5C"), "{text}");
    let (bytes, count) = lines.fold((0i64, 0i64), |(b, c), l| {
        let mut f = l
            .split_whitespace()
            .map(|n| n.parse::<i64>().expect("number"));
        (b + f.next().expect("bytes"), c + f.next().expect("count"))
    });
    assert_eq!((bytes, count), (1000, 2), "{text}");

    // After a restart: the same usage; and with the file removed, recalculated to the same.
    let server = spool.start();
    let mut c = login(&server, "carol", "carol-pw");
    assert_eq!(quota(&mut c), before);
    fs::remove_file(&maildirsize).expect("remove");
    assert_eq!(quota(&mut c), before);
    assert_eq!(
        fs::read_to_string(&maildirsize).expect("recalculated"),
        "1024S,5C\n1000 2\n"
    );
}

#[test]
fn per_user_quota_rule_from_the_passwd_file() {
    let spool = Spool::new();
    set_extra_fields(spool.path(), "carol", "userdb_quota_rule=*:messages=1");
    let server = spool.start();
    let mut carol = login(&server, "carol", "carol-pw");
    let (lines, _) = untagged(&mut carol, "GETQUOTAROOT INBOX");
    assert_eq!(lines[1], "* QUOTA \"\" (MESSAGE 0 1)");
    assert!(append(&mut carol, "INBOX", 200).starts_with("A OK"));
    assert!(append(&mut carol, "INBOX", 200).starts_with("A NO [OVERQUOTA]"));
    // Others are unlimited: the root is there, with no resources.
    let mut alice = login(&server, "alice", "alice-pw");
    let (lines, _) = untagged(&mut alice, "GETQUOTAROOT INBOX");
    assert_eq!(lines, ["* QUOTAROOT \"INBOX\" \"\"", "* QUOTA \"\" ()"]);
    for _ in 0..3 {
        assert!(append(&mut alice, "INBOX", 200).starts_with("A OK"));
    }
}

/// A raw LMTP exchange: sends `input`, returns every reply line until the server closes.
fn lmtp(addr: SocketAddr, input: &str) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(input.as_bytes()).expect("send");
    BufReader::new(stream)
        .lines()
        .map(|l| l.expect("reply"))
        .collect()
}

#[test]
fn lmtp_full_recipient_gets_552_others_250() {
    let spool = Spool::new();
    set_extra_fields(spool.path(), "carol", "quota_rule=*:storage=1K");
    let server = common::Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"]);
    let addr = server.announced("LMTP").expect("LMTP address");
    let body = "x".repeat(600);
    let tx = format!(
        "LHLO mx\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<carol@example.com>\r\n\
         RCPT TO:<alice@example.com>\r\nDATA\r\nSubject: hi\r\n\r\n{body}\r\n.\r\nQUIT\r\n"
    );
    let first = lmtp(addr, &tx);
    let results: Vec<&str> = first[first.len() - 3..first.len() - 1]
        .iter()
        .map(|l| &l[..9])
        .collect();
    assert_eq!(results, ["250 2.0.0", "250 2.0.0"], "{first:?}");
    // Carol holds about 670 bytes of her 1 KiB: the second copy would exceed it.
    let second = lmtp(addr, &tx);
    let n = second.len();
    assert_eq!(
        second[n - 3..n - 1],
        [
            "552 5.2.2 <carol@example.com> Mailbox full",
            "250 2.0.0 <alice@example.com> delivered"
        ],
        "{second:?}"
    );
    let mut carol = login(&server, "carol", "carol-pw");
    assert_eq!(messages_in(&mut carol, "INBOX"), 1);
    let mut alice = login(&server, "alice", "alice-pw");
    assert_eq!(messages_in(&mut alice, "INBOX"), 2);
}

#[test]
fn imapclient_get_quota_root() {
    common::ensure_python_module("imapclient", "python3-imapclient");
    let spool = Spool::new();
    spool.reg_set("QuotaStorage", "1024");
    spool.reg_set("QuotaMessages", "10");
    let server = spool.start();
    let out = server.python("quota.py", &["carol", "carol-pw"]);
    assert!(out.contains("quota ok"), "{out}");
}
