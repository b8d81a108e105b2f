//! Interoperability with OfflineIMAP (Debian's `offlineimap3`): a mailbox on hato is pulled into
//! an empty local Maildir with its flags, then changes made on each side (a new local message,
//! a local flag, a server flag, a server expunge) travel to the other side on the next runs.
//!
//! Needs `offlineimap` on PATH; when it is missing the test installs Debian's `offlineimap3`
//! with apt-get, and fails (it never skips) when that is impossible.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Server, Spool};

/// Longest a single offlineimap run may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(120);

fn message(i: usize) -> String {
    format!(
        "From: Alice <alice@example.com>\r\nTo: Carol <carol@example.com>\r\n\
         Subject: message {i}\r\nMessage-ID: <offlineimap-{i}@example.com>\r\n\r\nbody {i}\r\n"
    )
}

fn append(c: &mut Client, mailbox: &str, flags: &str, text: &str) {
    let answer = c.run(
        "A",
        &format!("APPEND {mailbox} ({flags}) {{{}+}}\r\n{text}", text.len()),
    );
    assert!(answer.starts_with("A OK"), "{answer}");
}

/// Runs offlineimap once with `config`, bounded in time; panics with its output on failure.
fn sync(config: &Path) {
    let mut child = Command::new("offlineimap")
        .arg("-c")
        .arg(config)
        .args(["-o", "-u", "basic"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run offlineimap");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            assert!(
                status.success(),
                "offlineimap failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).to_lowercase()
                + &String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(
                !text.contains("error"),
                "offlineimap reported errors:\n{text}"
            );
            return;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("offlineimap ran past {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The local Maildir's messages of `folder`: (file path, Maildir flag letters).
fn local(root: &Path, folder: &str) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(dir) = fs::read_dir(root.join(folder).join(sub)) else {
            continue;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let flags = name
                .split_once(":2,")
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            found.push((entry.path(), flags));
        }
    }
    found
}

/// Messages on the server in `mailbox`, and how many of them have `flag`.
fn server_counts(server: &Server, mailbox: &str, flag: &str) -> (usize, usize) {
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    assert!(
        c.run("s", &format!("EXAMINE {mailbox}"))
            .starts_with("s OK")
    );
    let count = |c: &mut Client, key: &str| -> usize {
        c.send(format!("f SEARCH {key}\r\n").as_bytes());
        let (untagged, tagged) = c.until_tagged("f");
        assert!(tagged.starts_with("f OK"), "{tagged}");
        untagged
            .iter()
            .find_map(|l| l.strip_prefix("* SEARCH"))
            .map_or(0, |rest| rest.split_whitespace().count())
    };
    let all = count(&mut c, "ALL");
    let flagged = count(&mut c, flag);
    (all, flagged)
}

#[test]
fn offlineimap_syncs_both_ways() {
    common::ensure_command("offlineimap", "offlineimap3");
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    for i in 0..30 {
        let flags = match i % 3 {
            0 => "\\Seen",
            1 => "\\Seen \\Flagged",
            _ => "",
        };
        append(&mut c, "INBOX", flags, &message(i));
    }
    for i in 30..35 {
        append(&mut c, "Sent", "\\Seen", &message(i));
    }

    let work = tempfile::tempdir().expect("tempdir");
    let mail = work.path().join("mail");
    let config = work.path().join("offlineimaprc");
    fs::write(
        &config,
        format!(
            "[general]\naccounts = hato\nmetadata = {meta}\n\n\
             [Account hato]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {mail}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = {host}\nremoteport = {port}\n\
             remoteuser = carol\nremotepass = carol-pw\nssl = no\nstarttls = no\n\
             folderfilter = lambda name: name in ['INBOX', 'Sent']\n",
            meta = work.path().join("meta").display(),
            mail = mail.display(),
            host = server.imap.ip(),
            port = server.imap.port(),
        ),
    )
    .expect("config");

    // 1. Pull: every message, with its flags.
    sync(&config);
    let inbox = local(&mail, "INBOX");
    assert_eq!(inbox.len(), 30, "{inbox:?}");
    assert_eq!(inbox.iter().filter(|(_, f)| f.contains('S')).count(), 20);
    assert_eq!(inbox.iter().filter(|(_, f)| f.contains('F')).count(), 10);
    assert_eq!(local(&mail, "Sent").len(), 5);

    // 2. Local changes go up: a new message, and a flag on an existing one.
    fs::write(
        mail.join("INBOX/new/1700000000.local1.host"),
        message(100).replace("\r\n", "\n"),
    )
    .expect("new local message");
    let (path, flags) = inbox
        .iter()
        .find(|(_, f)| !f.contains('F'))
        .cloned()
        .expect("an unflagged message");
    let mut letters: Vec<char> = flags.chars().chain(['F']).collect();
    letters.sort_unstable();
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
    let renamed = path.with_file_name(format!(
        "{base}:2,{}",
        letters.into_iter().collect::<String>()
    ));
    fs::rename(&path, &renamed).expect("flag locally");
    sync(&config);
    assert_eq!(server_counts(&server, "INBOX", "FLAGGED"), (31, 11));

    // 3. Server changes come down: a flag, and an expunge.
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    assert!(
        c.run("f", "UID STORE 1 +FLAGS (\\Answered)")
            .starts_with("f OK")
    );
    assert!(
        c.run("d", "UID STORE 2 +FLAGS (\\Deleted)")
            .starts_with("d OK")
    );
    assert!(c.run("e", "EXPUNGE").starts_with("e OK"));
    sync(&config);
    let inbox = local(&mail, "INBOX");
    assert_eq!(inbox.len(), 30, "{inbox:?}");
    assert_eq!(inbox.iter().filter(|(_, f)| f.contains('R')).count(), 1);
    // UID 2 (message 1) was one of the flagged ones.
    assert_eq!(inbox.iter().filter(|(_, f)| f.contains('F')).count(), 10);
    assert_eq!(server_counts(&server, "INBOX", "ANSWERED"), (30, 1));
    assert_eq!(server_counts(&server, "INBOX", "FLAGGED"), (30, 10));
}
