//! Interoperability with `mbsync` (Debian's isync): a generated 1,000-message Maildir++ tree is
//! pushed to hato, pulled back into an empty Maildir, and then flag changes and new messages
//! made on every side (server, both Maildirs) travel both ways. Every step is checked against
//! the expected state: message sets per folder (by Message-ID), message bytes, flags and
//! arrival times (`CopyArrivalDate`: file mtime <-> INTERNALDATE), on the server over IMAP and
//! in the Maildirs.
//!
//! mbsync itself changes two things, which the comparisons allow for and nothing else: it adds
//! an `X-TUID:` header line at the end of the header of every message it copies, and its Maildir
//! store keeps LF line ends (the IMAP side is CRLF).
//!
//! Needs `mbsync` on PATH; when it is missing the test installs Debian's `isync` with apt-get,
//! and fails (it never skips) when that is impossible.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Spool;

const MESSAGES: usize = 1000;
/// Folders of the source, as IMAP names (delimiter `.`), with their share of the messages.
const FOLDERS: [(&str, usize); 3] = [("INBOX", 800), ("Lists", 150), ("Lists.Rust", 50)];
/// Folders every new hato user has.
const DEFAULT_FOLDERS: [&str; 5] = ["Archive", "Drafts", "Junk", "Sent", "Trash"];
/// Longest a single mbsync run may take before it is killed.
const MBSYNC_DEADLINE: Duration = Duration::from_secs(300);

/// One generated message.
#[derive(Clone)]
struct Msg {
    bytes: Vec<u8>,
    /// Maildir flag letters, sorted (`DFRST` order).
    flags: String,
    /// Delivered to `new/` (no info part) rather than `cur/`.
    in_new: bool,
    /// Arrival time (Unix seconds): the file's mtime, the IMAP INTERNALDATE.
    arrived: i64,
}

/// folder -> Message-ID -> message.
type Expected = BTreeMap<String, BTreeMap<String, Msg>>;
/// folder -> Message-ID -> (bytes, flag letters, arrival time) as found in a store.
type Found = BTreeMap<String, BTreeMap<String, (Vec<u8>, String, i64)>>;

#[test]
fn mbsync_syncs_a_thousand_messages_both_ways() {
    let started = Instant::now();
    let version = ensure_mbsync();
    println!("mbsync: {version}");

    // 1. The source Maildir.
    let t = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let source_dir = work.path().join("source");
    let mut expected = generate(MESSAGES);
    write_maildir(&source_dir, &expected);
    let sizes: Vec<usize> = expected
        .values()
        .flat_map(|f| f.values().map(|m| m.bytes.len()))
        .collect();
    println!(
        "generated {} messages ({} bytes; smallest {}, largest {}) in {:?}: {}",
        sizes.len(),
        sizes.iter().sum::<usize>(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        t.elapsed(),
        expected
            .iter()
            .map(|(f, m)| format!("{f}={}", m.len()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let all: Vec<&Msg> = expected.values().flat_map(|f| f.values()).collect();
    let with = |what: &dyn Fn(&Msg) -> bool| all.iter().filter(|m| what(m)).count();
    println!(
        "  {} multipart, {} with 8-bit UTF-8, {} without a final line end, {} in new/; \
         flags: {} S, {} F, {} R, {} D, {} none",
        with(&|m| m.bytes.windows(10).any(|w| w == b"multipart/")),
        with(&|m| m.bytes.iter().any(|&b| b >= 0x80)),
        with(&|m| !m.bytes.ends_with(b"\n")),
        with(&|m| m.in_new),
        with(&|m| m.flags.contains('S')),
        with(&|m| m.flags.contains('F')),
        with(&|m| m.flags.contains('R')),
        with(&|m| m.flags.contains('D')),
        with(&|m| m.flags.is_empty()),
    );
    for folder in DEFAULT_FOLDERS {
        expected.entry(folder.to_string()).or_default();
    }

    // 2. Push: source Maildir -> hato.
    let spool = Spool::new();
    let server = spool.start();
    let rc_a = write_rc(work.path(), "a", &version, server.imap, &source_dir);
    let t = Instant::now();
    run_mbsync(&rc_a, "push");
    println!("push: mbsync took {:?}", t.elapsed());

    let t = Instant::now();
    let on_server = server_snapshot(server.imap);
    compare(
        "server after push",
        &expected,
        &strip_found(&on_server),
        Lines::Crlf,
    );
    println!(
        "server after push: {} folders, {} messages match the source (checked in {:?})",
        on_server.len(),
        count(&on_server),
        t.elapsed()
    );

    // 3. Pull: hato -> an empty Maildir.
    let pulled_dir = work.path().join("pulled");
    fs::create_dir_all(&pulled_dir).expect("mkdir pulled");
    let rc_b = write_rc(work.path(), "b", &version, server.imap, &pulled_dir);
    let t = Instant::now();
    run_mbsync(&rc_b, "pull");
    println!("pull: mbsync took {:?}", t.elapsed());
    let pulled = read_maildir(&pulled_dir);
    compare("pulled Maildir", &expected, &pulled, Lines::Lf);
    println!(
        "pulled Maildir: {} folders, {} messages match the source",
        pulled.len(),
        count_found(&pulled)
    );

    // 4. Changes on every side, synced both ways.
    // On the server: ten UID STOREs, and four APPENDs.
    let uids: BTreeMap<(String, String), u32> = on_server
        .iter()
        .flat_map(|(folder, msgs)| {
            msgs.iter()
                .map(|(id, m)| ((folder.clone(), id.clone()), m.uid))
        })
        .collect();
    let mut changes = Vec::new();
    let inbox_ids: Vec<String> = expected["INBOX"].keys().cloned().collect();
    let lists_ids: Vec<String> = expected["Lists"].keys().cloned().collect();
    for (n, id) in inbox_ids.iter().step_by(97).take(8).enumerate() {
        let (op, letters) = if n % 2 == 0 { ('+', "FR") } else { ('-', "S") };
        changes.push(("INBOX", id.clone(), op, letters));
    }
    for id in lists_ids.iter().step_by(61).take(2) {
        changes.push(("Lists", id.clone(), '+', "FS"));
    }
    assert_eq!(changes.len(), 10);
    let mut c = Imap::login(server.imap);
    for (folder, id, op, letters) in &changes {
        c.ok(&format!("SELECT {}", quote(folder)));
        let uid = uids[&(folder.to_string(), id.clone())];
        c.ok(&format!(
            "UID STORE {uid} {op}FLAGS.SILENT ({})",
            imap_flags(letters).join(" ")
        ));
        let m = expected
            .get_mut(*folder)
            .and_then(|f| f.get_mut(id))
            .unwrap();
        m.flags = apply(&m.flags, *op, letters);
    }
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for (i, folder) in [
        (1000, "Lists"),
        (1001, "Lists"),
        (1002, "Lists"),
        (1003, "Archive"),
    ] {
        let msg = make_msg(i, &mut rng);
        c.append(folder, &imap_flags(&msg.flags), msg.arrived, &msg.bytes);
        expected.get_mut(folder).unwrap().insert(message_id(i), msg);
    }
    c.ok("LOGOUT");
    // In the pulled Maildir: two new messages in INBOX (one in cur/, one in new/), with LF line
    // ends as a local mail reader writes them.
    for i in [1004, 1008] {
        let msg = make_msg(i, &mut rng);
        put_message(&pulled_dir, &format!("local{i}"), &msg, true);
        expected
            .get_mut("INBOX")
            .unwrap()
            .insert(message_id(i), msg);
    }
    // In the pushed Maildir: five renames, as a mail reader would do them.
    let mut local = 0;
    for id in inbox_ids.iter().skip(13).step_by(89).take(5) {
        let m = expected
            .get_mut("INBOX")
            .and_then(|f| f.get_mut(id))
            .unwrap();
        let new_flags = apply(&m.flags, '+', if local % 2 == 0 { "F" } else { "RS" });
        rename_flags(&source_dir, id, &new_flags);
        m.flags = new_flags;
        local += 1;
    }
    let t = Instant::now();
    run_mbsync(&rc_a, "round 2, pushed Maildir");
    run_mbsync(&rc_b, "round 2, pulled Maildir");
    run_mbsync(&rc_a, "round 2, pushed Maildir again");
    println!(
        "round 2 ({} server flag changes and 4 APPENDs, {local} flag changes in the pushed \
         Maildir, 2 new messages in the pulled one): three mbsync runs took {:?}",
        changes.len(),
        t.elapsed()
    );
    let on_server = server_snapshot(server.imap);
    compare(
        "server after round 2",
        &expected,
        &strip_found(&on_server),
        Lines::Crlf,
    );
    compare(
        "pushed Maildir after round 2",
        &expected,
        &read_maildir(&source_dir),
        Lines::Any,
    );
    compare(
        "pulled Maildir after round 2",
        &expected,
        &read_maildir(&pulled_dir),
        Lines::Lf,
    );
    println!(
        "after round 2: server and both Maildirs agree ({} messages each)",
        count(&on_server)
    );
    println!("total {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// mbsync

/// Returns `mbsync --version` ("isync 1.4.4"), installing Debian's isync first if needed.
fn ensure_mbsync() -> String {
    let version = || {
        Command::new("mbsync")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(v) = version() {
        return v;
    }
    println!("mbsync is not on PATH; installing Debian's isync (apt-get install -y isync)");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed = apt(&["update"]) && apt(&["install", "-y", "isync"]);
    match version() {
        Some(v) if installed => v,
        _ => panic!(
            "this test needs mbsync (Debian package isync), which is not installed, and \
             `apt-get update && apt-get install -y isync` failed (not root, or no network?); \
             install isync and run the test again"
        ),
    }
}

/// (major, minor) of "isync 1.4.4".
fn parse_version(version: &str) -> (u32, u32) {
    let number = version.split_whitespace().last().unwrap_or("0.0");
    let mut parts = number.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// An mbsyncrc syncing everything of carol's hato account with the Maildir++ tree at `maildir`;
/// the sync state lives in the Maildir (`SyncState *`).
fn write_rc(dir: &Path, name: &str, version: &str, imap: SocketAddr, maildir: &Path) -> PathBuf {
    // isync 1.5 renamed SSLType to TLSType.
    let tls_keyword = if parse_version(version) >= (1, 5) {
        "TLSType"
    } else {
        "SSLType"
    };
    let rc = format!(
        "IMAPAccount hato\n\
         Host {host}\n\
         Port {port}\n\
         User carol\n\
         Pass carol-pw\n\
         {tls_keyword} None\n\
         # Named explicitly: mbsync's default (*) excludes plaintext mechanisms without TLS.\n\
         AuthMechs LOGIN\n\
         Timeout 60\n\
         \n\
         IMAPStore hato-far\n\
         Account hato\n\
         \n\
         MaildirStore local-near\n\
         Inbox {inbox}\n\
         SubFolders Maildir++\n\
         \n\
         Channel sync\n\
         Far :hato-far:\n\
         Near :local-near:\n\
         Patterns *\n\
         Create Both\n\
         Sync All\n\
         Expunge None\n\
         CopyArrivalDate yes\n\
         SyncState *\n",
        host = imap.ip(),
        port = imap.port(),
        inbox = maildir.display(),
    );
    let path = dir.join(format!("mbsyncrc-{name}"));
    fs::write(&path, rc).expect("write mbsyncrc");
    path
}

/// Runs `mbsync -V -c rc -a`, killing it after [`MBSYNC_DEADLINE`]; asserts it succeeded.
fn run_mbsync(rc: &Path, what: &str) {
    let log_path = rc.with_extension(format!("{}.log", what.replace([' ', ','], "_")));
    let log = fs::File::create(&log_path).expect("create mbsync log");
    let mut child = Command::new("mbsync")
        .arg("-V")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        // Nothing of the user's (~/.mbsyncrc, ~/.mbsync/) is read or written.
        .env("HOME", rc.parent().expect("rc directory"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn mbsync");
    let deadline = Instant::now() + MBSYNC_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mbsync") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "mbsync ({what}) failed with {s}; last lines of its output:\n{}",
            tail.join("\n")
        ),
        None => panic!(
            "mbsync ({what}) did not finish within {MBSYNC_DEADLINE:?}; last lines:\n{}",
            tail.join("\n")
        ),
    }
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("Error") || l.contains("rror:"))
        .collect();
    assert!(
        warnings.is_empty(),
        "mbsync ({what}) reported errors:\n{}",
        warnings.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The generated messages

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const ASCII_WORDS: &[&str] = &[
    "the", "mailbox", "server", "sync", "flag", "message", "folder", "answer", "literal", "worker",
    "session", "idle", "quota", "delivery", "header", "body", "Outlook", "ring", "uid", "validity",
    "expunge", "append", "search", "fetch", "store", "copy", "move", "archive", "a", "of", "to",
    "and", "is", "from", "with",
];
const UTF8_WORDS: &[&str] = &[
    "Grüße",
    "aus",
    "Köln",
    "façade",
    "naïve",
    "smørrebrød",
    "日本語",
    "の",
    "メール",
    "Ελληνικά",
    "γράμμα",
    "Привет",
    "письмо",
    "📬",
    "✉️",
    "עברית",
    "العربية",
    "中文",
    "邮件",
    "ąčęėįšųūž",
    "—",
    "…",
];

/// Appends CRLF-terminated text lines of words until `out` holds about `target` bytes.
fn fill_text(out: &mut Vec<u8>, rng: &mut Rng, target: usize, words: &[&[&str]]) {
    while out.len() < target {
        let mut line = String::new();
        let width = 30 + rng.below(46);
        match rng.below(60) {
            // Lines mail software likes to mangle.
            0 => line.push_str("From the desk of the postmaster: this line starts with From."),
            1 => line.push('.'),
            2 => line.push_str("trailing blanks   \t"),
            3 => {}
            _ => {
                while line.len() < width {
                    let list = words[rng.below(words.len())];
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(list[rng.below(list.len())]);
                }
            }
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Quoted-printable for text that is mostly ASCII.
fn quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut col = 0;
    for &b in text {
        if b == b'\r' {
            continue;
        }
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            col = 0;
            continue;
        }
        if col >= 72 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if (b' '..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            col += 1;
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
            col += 3;
        }
    }
    out
}

fn message_id(i: usize) -> String {
    format!("<mbsync-{i:04}.{}@hato.test>", i * 7919 % 1000)
}

/// Message `i`: about `target` bytes (log-uniform 200 B .. 100 KB), CRLF line ends, plain,
/// 8-bit UTF-8, multipart/mixed with a base64 attachment, or multipart/alternative.
fn message(i: usize, rng: &mut Rng) -> Vec<u8> {
    let target = match i {
        0 => 100_000,
        1 => 200,
        _ => (200.0 * 500f64.powf(rng.unit())) as usize,
    };
    let id = message_id(i);
    let mut m = Vec::new();
    if target < 700 {
        // Small: a minimal header.
        m.extend_from_slice(format!("From: s{i}@example.org\r\nMessage-ID: {id}\r\n").as_bytes());
        m.extend_from_slice(format!("Subject: short {i}\r\n\r\n").as_bytes());
        fill_text(&mut m, rng, target, &[ASCII_WORDS]);
        return m;
    }
    let subject = if i % 97 == 3 {
        // Raw UTF-8 in a header (RFC 6532 style).
        format!("Grüße №{i} — 日本語の件名")
    } else {
        format!("mbsync test message {i}")
    };
    m.extend_from_slice(
        format!(
            "Return-Path: <sender{k}@example.org>\r\n\
             From: Sender {k} <sender{k}@example.org>\r\n\
             To: Carol <carol@example.com>\r\n\
             Subject: {subject}\r\n\
             Date: {day} Mar 2024 {h:02}:{min:02}:{s:02} +0100\r\n\
             Message-ID: {id}\r\n",
            k = i % 17,
            day = 1 + i % 28,
            h = i % 24,
            min = i % 60,
            s = (i * 7) % 60,
        )
        .as_bytes(),
    );
    if i % 50 == 7 {
        m.extend_from_slice(b"X-Folded: a header that is folded\r\n\tover two lines\r\n");
    }
    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
    match i % 10 {
        4 | 5 => {
            m.extend_from_slice(
                b"Content-Type: text/plain; charset=utf-8\r\n\
                  Content-Transfer-Encoding: 8bit\r\n\r\n",
            );
            fill_text(&mut m, rng, target, &[UTF8_WORDS, ASCII_WORDS]);
        }
        6 | 7 => {
            let boundary = format!("=_mixed_{i}_boundary");
            m.extend_from_slice(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                     This is a multi-part message in MIME format.\r\n\
                     --{boundary}\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: 8bit\r\n\r\n"
                )
                .as_bytes(),
            );
            let text_end = m.len() + 300 + rng.below(600);
            fill_text(&mut m, rng, text_end, &[ASCII_WORDS, UTF8_WORDS]);
            m.extend_from_slice(
                format!(
                    "--{boundary}\r\n\
                     Content-Type: application/octet-stream; name=\"blob{i}.bin\"\r\n\
                     Content-Disposition: attachment; filename=\"blob{i}.bin\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            let raw = target.saturating_sub(m.len() + 40) * 3 / 4;
            let blob: Vec<u8> = (0..raw.max(16)).map(|_| rng.next() as u8).collect();
            m.extend_from_slice(&base64(&blob));
            m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        8 => {
            let boundary = format!("alt-{i}");
            m.extend_from_slice(
                format!(
                    "Content-Type: multipart/alternative; boundary={boundary}\r\n\r\n\
                     --{boundary}\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                )
                .as_bytes(),
            );
            let mut text = Vec::new();
            fill_text(&mut text, rng, target / 2, &[ASCII_WORDS, UTF8_WORDS]);
            m.extend_from_slice(&quoted_printable(&text));
            m.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\n\
                     Content-Type: text/html; charset=utf-8\r\n\
                     Content-Transfer-Encoding: 8bit\r\n\r\n<html><body>\r\n"
                )
                .as_bytes(),
            );
            fill_text(&mut m, rng, target, &[ASCII_WORDS, UTF8_WORDS]);
            m.extend_from_slice(format!("</body></html>\r\n--{boundary}--\r\n").as_bytes());
        }
        _ => {
            m.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
            fill_text(&mut m, rng, target, &[ASCII_WORDS]);
        }
    }
    if i % 61 == 5 {
        // No line end after the last line.
        m.truncate(m.len() - 2);
    }
    m
}

/// Flags by message number: unflagged in `new/`, and in `cur/` with `S`, `FS`, `RS`, `FRS`,
/// `D`, `F` or nothing.
fn flags_for(i: usize) -> (&'static str, bool) {
    match i % 12 {
        0 => ("", true),
        1..=4 => ("S", false),
        5 => ("FS", false),
        6 => ("RS", false),
        7 => ("", false),
        8 => ("FRS", false),
        9 => ("D", false),
        10 => ("S", false),
        _ => ("F", false),
    }
}

/// Message `i` with its flags and arrival time.
fn make_msg(i: usize, rng: &mut Rng) -> Msg {
    let (flags, in_new) = flags_for(i);
    Msg {
        bytes: message(i, rng),
        flags: flags.to_string(),
        in_new,
        // Spread over 2023-11 .. 2024-01, at odd seconds.
        arrived: 1_700_000_000 + i as i64 * 7_919,
    }
}

fn generate(n: usize) -> Expected {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut expected = Expected::new();
    let mut i = 0;
    for (folder, share) in FOLDERS {
        let share = share * n / MESSAGES;
        for _ in 0..share {
            let msg = make_msg(i, &mut rng);
            expected
                .entry(folder.to_string())
                .or_default()
                .insert(message_id(i), msg);
            i += 1;
        }
    }
    expected
}

// ---------------------------------------------------------------------------------------------
// Maildirs (Maildir++ layout: INBOX at the root, folder `a.b` in `.a.b`)

fn folder_dir(root: &Path, folder: &str) -> PathBuf {
    if folder == "INBOX" {
        root.to_path_buf()
    } else {
        root.join(format!(".{folder}"))
    }
}

fn write_maildir(root: &Path, expected: &Expected) {
    let mut n = 0;
    for (folder, msgs) in expected {
        let dir = folder_dir(root, folder);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).expect("mkdir maildir");
        }
        for msg in msgs.values() {
            n += 1;
            put_message(&dir, &format!("M{n}P4242Q{n}"), msg, false);
        }
    }
}

/// Delivers `msg` into the Maildir folder `dir` (with LF line ends if `lf`), with its arrival
/// time as the file's mtime.
fn put_message(dir: &Path, unique: &str, msg: &Msg, lf: bool) {
    let base = format!("{}.{unique}.hato-test", msg.arrived);
    let path = if msg.in_new {
        dir.join("new").join(base)
    } else {
        dir.join("cur").join(format!("{base}:2,{}", msg.flags))
    };
    let bytes = if lf {
        crlf_to_lf(&msg.bytes)
    } else {
        msg.bytes.clone()
    };
    fs::write(&path, bytes).expect("write message");
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(msg.arrived as u64);
    fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

/// Every message of a Maildir++ tree: folder -> Message-ID -> (bytes, flag letters).
fn read_maildir(root: &Path) -> Found {
    let mut found = Found::new();
    let mut folders = vec![("INBOX".to_string(), root.to_path_buf())];
    for entry in fs::read_dir(root).expect("read maildir root") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(folder) = name.strip_prefix('.')
            && entry.path().join("cur").is_dir()
        {
            folders.push((folder.to_string(), entry.path()));
        }
    }
    for (folder, dir) in folders {
        let msgs = found.entry(folder.clone()).or_default();
        for sub in ["cur", "new"] {
            for entry in fs::read_dir(dir.join(sub)).expect("read maildir") {
                let entry = entry.expect("dir entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                let flags = name
                    .split_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                let bytes = fs::read(entry.path()).expect("read message");
                let mtime = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .expect("mtime")
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("mtime after 1970")
                    .as_secs() as i64;
                let id = header_message_id(&bytes)
                    .unwrap_or_else(|| panic!("{folder}/{sub}/{name}: no Message-ID"));
                let previous = msgs.insert(id.clone(), (bytes, flags, mtime));
                assert!(previous.is_none(), "{folder}: {id} is there twice");
            }
        }
    }
    found
}

/// Renames the message `id` of the Maildir INBOX to carry `flags` (moving it to `cur/`).
fn rename_flags(root: &Path, id: &str, flags: &str) {
    for sub in ["cur", "new"] {
        for entry in fs::read_dir(root.join(sub)).expect("read maildir") {
            let path = entry.expect("dir entry").path();
            let bytes = fs::read(&path).expect("read message");
            if header_message_id(&bytes).as_deref() != Some(id) {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
            let to = root.join("cur").join(format!("{base}:2,{flags}"));
            fs::rename(&path, to).expect("rename message");
            return;
        }
    }
    panic!("{id} not found in {}", root.display());
}

// ---------------------------------------------------------------------------------------------
// Comparing

fn header_message_id(bytes: &[u8]) -> Option<String> {
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"Message-ID:") {
            return Some(String::from_utf8_lossy(&line[11..]).trim().to_string());
        }
    }
    None
}

/// Removes the `X-TUID:` header lines mbsync adds; returns the message and how many it removed.
fn strip_tuid(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes.len());
    let mut removed = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest);
            break;
        }
        if line.starts_with(b"X-TUID: ") {
            removed += 1;
        } else {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    (out, removed)
}

fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// The line ends a store is expected to hold.
#[derive(Clone, Copy, PartialEq)]
enum Lines {
    /// Exactly the source's CRLF (IMAP).
    Crlf,
    /// LF only (mbsync's Maildir copies).
    Lf,
    /// As the source, or LF only (the source Maildir after mbsync has been through it).
    Any,
}

fn describe_difference(want: &[u8], got: &[u8]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let show = |b: &[u8]| {
        let from = at.saturating_sub(40);
        let to = (at + 60).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[from.min(to)..to]))
    };
    format!(
        "lengths {} (source) vs {} (found), first difference at byte {at}: source {} found {}",
        want.len(),
        got.len(),
        show(want),
        show(got)
    )
}

/// Asserts `found` holds exactly the folders, messages, bytes and flags of `expected`.
fn compare(what: &str, expected: &Expected, found: &Found, lines: Lines) {
    let want_folders: BTreeSet<&String> = expected.keys().collect();
    let got_folders: BTreeSet<&String> = found.keys().collect();
    assert_eq!(want_folders, got_folders, "{what}: folders differ");
    let mut problems = Vec::new();
    for (folder, want_msgs) in expected {
        let got_msgs = &found[folder];
        let want_ids: BTreeSet<&String> = want_msgs.keys().collect();
        let got_ids: BTreeSet<&String> = got_msgs.keys().collect();
        if want_ids != got_ids {
            let missing: Vec<_> = want_ids.difference(&got_ids).take(5).collect();
            let extra: Vec<_> = got_ids.difference(&want_ids).take(5).collect();
            problems.push(format!(
                "{folder}: {} messages, expected {}; missing e.g. {missing:?}, unexpected e.g. \
                 {extra:?}",
                got_ids.len(),
                want_ids.len()
            ));
            continue;
        }
        for (id, want) in want_msgs {
            let (got_bytes, got_flags, got_arrived) = &got_msgs[id];
            let (got, tuids) = strip_tuid(got_bytes);
            if tuids > 1 {
                problems.push(format!("{folder} {id}: {tuids} X-TUID header lines"));
            }
            let source = &want.bytes;
            let same = match lines {
                Lines::Crlf => got == *source,
                Lines::Lf => got == crlf_to_lf(source),
                Lines::Any => got == *source || got == crlf_to_lf(source),
            };
            if !same {
                let reference = if lines == Lines::Crlf || got.windows(2).any(|w| w == b"\r\n") {
                    source.clone()
                } else {
                    crlf_to_lf(source)
                };
                problems.push(format!(
                    "{folder} {id}: bytes differ: {}",
                    describe_difference(&reference, &got)
                ));
            }
            if *got_arrived != want.arrived {
                problems.push(format!(
                    "{folder} {id}: arrival time {got_arrived} ({} s off the source's {})",
                    got_arrived - want.arrived,
                    want.arrived
                ));
            }
            if *got_flags != want.flags {
                problems.push(format!(
                    "{folder} {id}: flags {got_flags:?}, expected {:?}",
                    want.flags
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn count(snapshot: &Snapshot) -> usize {
    snapshot.values().map(|f| f.len()).sum()
}

fn count_found(found: &Found) -> usize {
    found.values().map(|f| f.len()).sum()
}

/// Maildir letters <-> IMAP system flags.
const FLAG_MAP: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

fn imap_flags(letters: &str) -> Vec<&'static str> {
    letters
        .chars()
        .map(|c| FLAG_MAP.iter().find(|(l, _)| *l == c).expect("flag").1)
        .collect()
}

/// Letters for IMAP flags; `\Recent` is dropped, anything unknown kept as `[name]`.
fn letters(imap: &[String]) -> String {
    let mut set = BTreeSet::new();
    let mut unknown = String::new();
    for flag in imap {
        if flag.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        match FLAG_MAP.iter().find(|(_, f)| f.eq_ignore_ascii_case(flag)) {
            Some((l, _)) => {
                set.insert(*l);
            }
            None => unknown.push_str(&format!("[{flag}]")),
        }
    }
    set.into_iter().collect::<String>() + &unknown
}

/// `flags` with `letters` added (`+`) or removed (`-`), sorted.
fn apply(flags: &str, op: char, letters: &str) -> String {
    let mut set: BTreeSet<char> = flags.chars().collect();
    for c in letters.chars() {
        if op == '+' {
            set.insert(c);
        } else {
            set.remove(&c);
        }
    }
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The server side, over IMAP

struct ServerMsg {
    uid: u32,
    flags: String,
    /// INTERNALDATE, Unix seconds.
    arrived: i64,
    bytes: Vec<u8>,
}

/// folder -> Message-ID -> message.
type Snapshot = BTreeMap<String, BTreeMap<String, ServerMsg>>;

fn strip_found(snapshot: &Snapshot) -> Found {
    snapshot
        .iter()
        .map(|(folder, msgs)| {
            let msgs = msgs
                .iter()
                .map(|(id, m)| (id.clone(), (m.bytes.clone(), m.flags.clone(), m.arrived)))
                .collect();
            (folder.clone(), msgs)
        })
        .collect()
}

/// A piece of a response: text, or the bytes of a literal.
enum Piece {
    Text(String),
    Literal(Vec<u8>),
}

/// A raw IMAP client that reads literals.
struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    fn login(addr: SocketAddr) -> Imap {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut c = Imap {
            reader: BufReader::new(stream),
            writer,
            tag: 0,
        };
        let greeting = c.response();
        assert!(matches!(&greeting[0], Piece::Text(t) if t.starts_with("* OK")));
        c.ok("LOGIN carol carol-pw");
        c
    }

    /// One response: a line, and the literals and lines that continue it.
    fn response(&mut self) -> Vec<Piece> {
        let mut pieces = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).expect("read");
            assert!(n > 0, "server closed the connection");
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let literal = text
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            pieces.push(Piece::Text(text));
            match literal {
                Some(len) => {
                    let mut bytes = vec![0; len];
                    self.reader.read_exact(&mut bytes).expect("read literal");
                    pieces.push(Piece::Literal(bytes));
                }
                None => return pieces,
            }
        }
    }

    /// Runs a command; returns its untagged responses; panics unless it is answered OK.
    fn ok(&mut self, command: &str) -> Vec<Vec<Piece>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("send");
        let mut untagged = Vec::new();
        loop {
            let response = self.response();
            if let Piece::Text(t) = &response[0]
                && let Some(status) = t.strip_prefix(&format!("{tag} "))
            {
                assert!(status.starts_with("OK"), "{command} -> {t}");
                return untagged;
            }
            untagged.push(response);
        }
    }
}

impl Imap {
    /// APPEND with flags and an INTERNALDATE, as a LITERAL+ literal.
    fn append(&mut self, folder: &str, flags: &[&str], arrived: i64, bytes: &[u8]) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut command = format!(
            "{tag} APPEND {} ({}) \"{}\" {{{}+}}\r\n",
            quote(folder),
            flags.join(" "),
            format_internal_date(arrived),
            bytes.len()
        )
        .into_bytes();
        command.extend_from_slice(bytes);
        command.extend_from_slice(b"\r\n");
        self.writer.write_all(&command).expect("send");
        loop {
            let response = self.response();
            if let Piece::Text(t) = &response[0]
                && t.starts_with(&format!("{tag} "))
            {
                assert!(t.starts_with(&format!("{tag} OK")), "APPEND -> {t}");
                return;
            }
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every message on the server, by folder (from LIST) and Message-ID.
fn server_snapshot(addr: SocketAddr) -> Snapshot {
    let mut c = Imap::login(addr);
    let mut folders = Vec::new();
    for response in c.ok("LIST \"\" \"*\"") {
        let Piece::Text(t) = &response[0] else {
            continue;
        };
        if !t.starts_with("* LIST ") {
            continue;
        }
        let name = match (&response[..], t.rsplit_once(") \".\" ")) {
            ([_, Piece::Literal(b), ..], _) => String::from_utf8_lossy(b).into_owned(),
            (_, Some((_, n))) => n.trim_matches('"').to_string(),
            _ => panic!("cannot read {t}"),
        };
        folders.push(name);
    }
    let mut snapshot = Snapshot::new();
    for folder in folders {
        let msgs = snapshot.entry(folder.clone()).or_default();
        let examine = c.ok(&format!("EXAMINE {}", quote(&folder)));
        let exists: usize = examine
            .iter()
            .find_map(|r| match &r[0] {
                Piece::Text(t) => t.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok(),
                _ => None,
            })
            .expect("EXISTS");
        if exists == 0 {
            continue;
        }
        for response in c.ok("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])") {
            let text: String = response
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(t) => Some(t.as_str()),
                    Piece::Literal(_) => None,
                })
                .collect::<Vec<_>>()
                .join(" ");
            if !text.contains(" FETCH (") {
                continue;
            }
            let bytes = response
                .iter()
                .find_map(|p| match p {
                    Piece::Literal(b) => Some(b.clone()),
                    Piece::Text(_) => None,
                })
                .unwrap_or_else(|| panic!("{folder}: FETCH without a body: {text}"));
            let uid = text
                .split_once("UID ")
                .and_then(|(_, r)| r.split([' ', ')']).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{folder}: FETCH without UID: {text}"));
            let flags: Vec<String> = text
                .split_once("FLAGS (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(f, _)| f.split_whitespace().map(str::to_string).collect())
                .unwrap_or_else(|| panic!("{folder}: FETCH without FLAGS: {text}"));
            let arrived = text
                .split_once("INTERNALDATE \"")
                .and_then(|(_, r)| r.split_once('"'))
                .and_then(|(d, _)| parse_internal_date(d))
                .unwrap_or_else(|| panic!("{folder}: FETCH without INTERNALDATE: {text}"));
            let id = header_message_id(&bytes)
                .unwrap_or_else(|| panic!("{folder}: UID {uid} has no Message-ID"));
            let msg = ServerMsg {
                uid,
                flags: letters(&flags),
                arrived,
                bytes,
            };
            assert!(
                msgs.insert(id.clone(), msg).is_none(),
                "{folder}: {id} is on the server twice"
            );
        }
        assert_eq!(msgs.len(), exists, "{folder}: EXISTS vs messages fetched");
    }
    c.ok("LOGOUT");
    snapshot
}

/// "17-Jul-1996 02:44:25 -0700" (day possibly space-padded) -> Unix seconds.
fn parse_internal_date(date: &str) -> Option<i64> {
    let (day, rest) = date.trim_start().split_once('-')?;
    let (month, rest) = rest.split_once('-')?;
    let mut fields = rest.split_whitespace();
    let year: i64 = fields.next()?.parse().ok()?;
    let mut hms = fields.next()?.split(':').map(|f| f.parse::<i64>());
    let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let zone = fields.next()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone: i64 = zone[1..].parse().ok()?;
    let offset = sign * (zone / 100 * 3600 + zone % 100 * 60);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|&n| n == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s - offset)
}

/// Unix seconds -> "dd-Mon-yyyy hh:mm:ss +0000".
fn format_internal_date(t: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}-{}-{year} {:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
