//! LMTP delivery end to end: the real `hato serve` with its LMTP listener, Python's
//! `smtplib.LMTP`, raw pipelined sessions, `hato deliver` through the server and without it,
//! and the messages read back over IMAP.
//!
//! Servers here are started with an explicit LMTP address (port 0, or a free port written to
//! `LmtpListen.1`), never the default 2424, which other test files' servers may hold.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Client, Spool, free_port};

/// A running `hato serve` whose LMTP address is known.
struct Server {
    inner: common::Server,
    /// `None` when the LMTP listener could not bind.
    lmtp: Option<SocketAddr>,
}

impl Server {
    /// Starts `hato serve` with `--lmtp <lmtp>` (or the reg tree's `LmtpListen.1` when `None`)
    /// and reads the LMTP address it announced.
    fn start(spool: &Path, lmtp: Option<&str>) -> Server {
        let args: Vec<&str> = lmtp.map(|a| vec!["--lmtp", a]).unwrap_or_default();
        let inner = common::Server::start_with(spool, &args);
        let lmtp = inner.announced("LMTP");
        Server { inner, lmtp }
    }

    fn lmtp(&self) -> SocketAddr {
        self.lmtp.expect("the LMTP listener is up")
    }

    /// The value of the `hato_deliveries_total` series with these labels (0 when absent).
    fn deliveries(&self, via: &str, result: &str) -> f64 {
        self.inner.metric_sum(
            "hato_deliveries_total",
            &[&format!("via=\"{via}\""), &format!("result=\"{result}\"")],
        )
    }

    fn imap(&self, user: &str, password: &str) -> Client {
        let mut client = Client::connect(self.inner.imap);
        let ok = client.run("L", &format!("LOGIN {user} {password}"));
        assert!(ok.starts_with("L OK"), "login: {ok}");
        client
    }

    /// Every message in `user`'s INBOX, in UID order.
    fn inbox(&self, user: &str, password: &str) -> Vec<Vec<u8>> {
        let mut client = self.imap(user, password);
        client.send(b"S SELECT INBOX\r\n");
        let (untagged, tagged) = client.until_tagged("S");
        assert!(tagged.starts_with("S OK"), "select: {tagged}");
        let exists: usize = untagged
            .iter()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .expect("EXISTS");
        let mut messages = Vec::new();
        for n in 1..=exists {
            client.send(format!("F FETCH {n} BODY.PEEK[]\r\n").as_bytes());
            let head = client.line();
            let size: usize = head
                .rsplit_once('{')
                .and_then(|(_, s)| s.strip_suffix('}'))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("FETCH answer: {head}"));
            messages.push(client.bytes(size));
            let (_, tagged) = client.until_tagged("F");
            assert!(tagged.starts_with("F OK"), "fetch: {tagged}");
        }
        let _ = client.run("Z", "LOGOUT");
        messages
    }
}

/// A raw LMTP connection: writes bytes, reads reply lines.
struct Lmtp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Lmtp {
    fn connect(addr: SocketAddr) -> Lmtp {
        let stream = TcpStream::connect(addr).expect("connect LMTP");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut lmtp = Lmtp { stream, reader };
        let greeting = lmtp.line();
        assert!(greeting.starts_with("220 "), "greeting: {greeting}");
        lmtp
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One reply line without CRLF; empty at end of stream.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read reply");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    /// One whole (possibly multi-line) reply.
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(line.len() >= 3, "short reply line {line:?} after {lines:?}");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Sends one command and returns its (last) reply line.
    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply().pop().expect("reply")
    }
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The message the Python client sends: a dot-stuffed line, a line of dots and an 8-bit line.
const PY_MESSAGE: &[u8] = b"From: Sender <sender@example.org>\r\nTo: carol@example.com\r\n\
Subject: LMTP test\r\n\r\nfirst line\r\n.starts with a dot\r\n..two dots\r\n.\r\n\
8-bit: caf\xc3\xa9 \xe2\x82\xac\r\nlast line\r\n";

const PY_CLIENT: &str = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
msg = (b"From: Sender <sender@example.org>\r\nTo: carol@example.com\r\n"
       b"Subject: LMTP test\r\n\r\nfirst line\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
       b"8-bit: caf\xc3\xa9 \xe2\x82\xac\r\nlast line\r\n")

# The library's own delivery: one known and one unknown recipient.
with smtplib.LMTP(host, port) as c:
    code, _ = c.ehlo()
    assert code == 250, code
    for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "size"):
        assert c.has_extn(ext), ext
    refused = c.sendmail("sender@example.org", ["carol@example.com", "nobody@example.com"], msg)
    assert list(refused) == ["nobody@example.com"], refused
    assert refused["nobody@example.com"][0] == 550, refused
    assert refused["nobody@example.com"][1].startswith(b"5.1.1"), refused

# LMTP's rule, step by step: after DATA one reply per accepted recipient.
with smtplib.LMTP(host, port) as c:
    c.ehlo()
    assert c.mail("")[0] == 250
    assert c.rcpt("alice@example.com")[0] == 250
    code, text = c.rcpt("ghost@example.com")
    assert code == 550 and text.startswith(b"5.1.1"), (code, text)
    assert c.rcpt("carol")[0] == 250
    code, text = c.data(b"Subject: second\r\n\r\nfor two\r\n")
    assert code == 250 and b"<alice@example.com>" in text, (code, text)
    code, text = c.getreply()
    assert code == 250 and b"<carol>" in text, (code, text)
    assert c.noop()[0] == 250
print("ok")
"#;

#[test]
fn python_lmtp_client_delivers_per_recipient() {
    let spool = Spool::new();
    let server = Server::start(spool.path(), Some("127.0.0.1:0"));
    let lmtp = server.lmtp();
    let out = python(
        PY_CLIENT,
        &[&lmtp.ip().to_string(), &lmtp.port().to_string()],
    );
    assert_eq!(out.trim(), "ok");

    let carol = server.inbox("carol", "carol-pw");
    assert_eq!(carol.len(), 2, "carol's INBOX");
    let mut expected =
        b"Return-Path: <sender@example.org>\r\nDelivered-To: <carol@example.com>\r\n".to_vec();
    expected.extend_from_slice(PY_MESSAGE);
    assert_eq!(
        String::from_utf8_lossy(&carol[0]),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(carol[0], expected);
    assert_eq!(
        carol[1],
        b"Return-Path: <>\r\nDelivered-To: <carol>\r\nSubject: second\r\n\r\nfor two\r\n"
    );
    let alice = server.inbox("alice", "alice-pw");
    assert_eq!(
        alice,
        [b"Return-Path: <>\r\nDelivered-To: <alice@example.com>\r\nSubject: second\r\n\r\nfor two\r\n"
            .to_vec()]
    );
    assert_eq!(server.deliveries("lmtp", "ok"), 3.0);
}

#[test]
fn pipelined_session_with_bare_lf_lines() {
    let spool = Spool::new();
    let server = Server::start(spool.path(), Some("127.0.0.1:0"));
    let mut lmtp = Lmtp::connect(server.lmtp());
    // The whole envelope in one write, as a PIPELINING client sends it.
    lmtp.send(
        b"LHLO mx.example.org\r\nMAIL FROM:<list@example.org> BODY=8BITMIME\r\n\
          RCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n\
          RCPT TO:<Carol@Example.COM>\r\nDATA\r\n",
    );
    let lhlo = lmtp.reply();
    assert!(lhlo.iter().any(|l| l == "250-PIPELINING"), "{lhlo:?}");
    assert!(
        lhlo.iter().any(|l| l == "250-ENHANCEDSTATUSCODES"),
        "{lhlo:?}"
    );
    assert!(lhlo.iter().any(|l| l == "250-8BITMIME"), "{lhlo:?}");
    assert_eq!(lhlo.last().map(String::as_str), Some("250 SIZE 52428800"));
    assert!(lmtp.line().starts_with("250 2.1.0"));
    assert!(lmtp.line().starts_with("250 2.1.5"));
    assert_eq!(lmtp.line(), "550 5.1.1 <nobody@example.com> User unknown");
    assert!(lmtp.line().starts_with("250 2.1.5"));
    assert!(lmtp.line().starts_with("354 "));
    // LF-only lines, as some MTAs send them, and a dot-stuffed line.
    lmtp.send(b"Subject: lf\n\nline one\n..dot\nline two\n.\n");
    assert_eq!(lmtp.line(), "250 2.0.0 <alice@example.com> delivered");
    assert_eq!(lmtp.line(), "250 2.0.0 <Carol@Example.COM> delivered");
    assert!(lmtp.command("QUIT").starts_with("221 2.0.0"));

    let body = b"Subject: lf\r\n\r\nline one\r\n.dot\r\nline two\r\n";
    let carol = server.inbox("carol", "carol-pw");
    let mut expected =
        b"Return-Path: <list@example.org>\r\nDelivered-To: <Carol@Example.COM>\r\n".to_vec();
    expected.extend_from_slice(body);
    assert_eq!(carol, [expected]);
    assert_eq!(server.inbox("alice", "alice-pw").len(), 1);
}

#[test]
fn oversized_message_rset_and_bad_syntax() {
    let spool = Spool::new();
    spool.reg_set("MaxLiteralSize", "4096");
    let server = Server::start(spool.path(), Some("127.0.0.1:0"));
    let mut lmtp = Lmtp::connect(server.lmtp());
    let lhlo = lmtp.command("LHLO test.example");
    assert_eq!(lhlo, "250 SIZE 4096");

    // Announced too big: refused at MAIL.
    let reply = lmtp.command("MAIL FROM:<a@example.org> SIZE=5000");
    assert!(reply.starts_with("552 5.3.4 "), "{reply}");
    // Not announced: refused after DATA, once per recipient.
    assert!(
        lmtp.command("MAIL FROM:<a@example.org>")
            .starts_with("250 ")
    );
    assert!(lmtp.command("RCPT TO:<carol>").starts_with("250 "));
    assert!(lmtp.command("RCPT TO:<alice>").starts_with("250 "));
    assert!(lmtp.command("DATA").starts_with("354 "));
    let big = "x".repeat(100);
    for _ in 0..50 {
        lmtp.send(format!("{big}\r\n").as_bytes());
    }
    lmtp.send(b".\r\n");
    assert_eq!(lmtp.line(), "552 5.3.4 <carol> Message too big for system");
    assert_eq!(lmtp.line(), "552 5.3.4 <alice> Message too big for system");

    // Bad syntax: 501 / 500 / 502, and the session goes on.
    let reply = lmtp.command("MAIL FROM:<a@example.org");
    assert!(reply.starts_with("501 "), "{reply}");
    let reply = lmtp.command("MAIL FROM:<a@example.org> SIZE=lots");
    assert!(reply.starts_with("501 "), "{reply}");
    let reply = lmtp.command("RCPT TO:<carol>");
    assert!(reply.starts_with("503 "), "RCPT before MAIL: {reply}");
    assert!(lmtp.command("FROBNICATE").starts_with("502 "));
    assert!(lmtp.command("EHLO x").starts_with("500 "));
    assert!(lmtp.command("").starts_with("500 "));
    let long = format!("NOOP {}", "y".repeat(70_000));
    assert!(lmtp.command(&long).starts_with("500 "));
    assert!(lmtp.command("VRFY carol").starts_with("252 "));

    // RSET forgets the transaction.
    assert!(
        lmtp.command("MAIL FROM:<a@example.org>")
            .starts_with("250 ")
    );
    assert!(lmtp.command("RCPT TO:<carol>").starts_with("250 "));
    assert_eq!(lmtp.command("RSET"), "250 2.0.0 OK");
    assert!(lmtp.command("DATA").starts_with("503 "));
    assert!(lmtp.command("RCPT TO:<carol>").starts_with("503 "));

    // And a message within the limit still goes through on the same connection.
    assert!(
        lmtp.command("MAIL FROM:<a@example.org> SIZE=20")
            .starts_with("250 ")
    );
    assert!(lmtp.command("RCPT TO:<carol>").starts_with("250 "));
    assert!(lmtp.command("DATA").starts_with("354 "));
    lmtp.send(b"Subject: small\r\n\r\nok\r\n.\r\n");
    assert_eq!(lmtp.line(), "250 2.0.0 <carol> delivered");
    assert!(lmtp.command("QUIT").starts_with("221 "));
    assert_eq!(lmtp.line(), "", "closed after QUIT");

    let carol = server.inbox("carol", "carol-pw");
    assert_eq!(carol.len(), 1);
    assert!(carol[0].ends_with(b"Subject: small\r\n\r\nok\r\n"));
    assert!(server.inbox("alice", "alice-pw").is_empty());
}

#[test]
fn connections_beyond_the_limit_get_421() {
    let spool = Spool::new();
    let server = Server::start(spool.path(), Some("127.0.0.1:0"));
    let open: Vec<Lmtp> = (0..64).map(|_| Lmtp::connect(server.lmtp())).collect();
    let mut extra = TcpStream::connect(server.lmtp()).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = String::new();
    extra.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("421 4.3.2 "), "{answer:?}");
    drop(open);
    // Slots are given back when connections close.
    let mut again = None;
    for _ in 0..100 {
        let mut probe = TcpStream::connect(server.lmtp()).expect("connect");
        probe
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut line = String::new();
        BufReader::new(&probe).read_line(&mut line).expect("read");
        if line.starts_with("220 ") {
            again = Some(line);
            let _ = probe.write_all(b"QUIT\r\n");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(again.is_some(), "no slot came free");
}

#[test]
fn serve_keeps_serving_imap_when_lmtp_cannot_bind() {
    let spool = Spool::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let server = Server::start(spool.path(), Some(&addr));
    assert_eq!(server.lmtp, None, "no LMTP line when the port is taken");
    let mut imap = server.imap("carol", "carol-pw");
    assert!(imap.run("N", "NOOP").starts_with("N OK"));
}

/// Runs `hato deliver` with `input` on standard input.
fn deliver(spool: &Spool, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("deliver")
        .args(args)
        .arg("--spool")
        .arg(spool.path())
        .env("HATO_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hato deliver");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("hato deliver")
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server listening for LMTP on the address in `LmtpListen.1` (a free port, retried if
/// another process takes it first).
fn start_on_configured_port(spool: &Spool) -> Server {
    for _ in 0..5 {
        spool.reg_set("LmtpListen", &format!("127.0.0.1:{}", free_port()));
        let server = Server::start(spool.path(), None);
        if server.lmtp.is_some() {
            return server;
        }
    }
    panic!("could not start an LMTP listener on a free port");
}

#[test]
fn deliver_command_through_the_server_and_directly() {
    let spool = Spool::new();
    let first = b"From sender@example.org Thu Jan  1 00:00:00 2026\n\
                  Subject: via lmtp\n\n.leading dot\nbody one\n";
    let second = b"Subject: direct\n\nbody two\n";

    let server = start_on_configured_port(&spool);
    let out = deliver(
        &spool,
        &["--user", "carol", "--from", "sender@example.org"],
        first,
    );
    assert_exit(&out, 0);
    assert_eq!(
        server.deliveries("deliver", "ok"),
        1.0,
        "went through the server"
    );
    assert_exit(&deliver(&spool, &["--user", "nobody"], b"x\n"), 67);
    let carol = server.inbox("carol", "carol-pw");
    assert_eq!(
        carol,
        [
            b"Return-Path: <sender@example.org>\r\nDelivered-To: <carol>\r\n\
           Subject: via lmtp\r\n\r\n.leading dot\r\nbody one\r\n"
                .to_vec()
        ]
    );
    drop(server);

    // No server: straight into the Maildir.
    assert_exit(&deliver(&spool, &["--user", "carol"], second), 0);
    assert_exit(&deliver(&spool, &["--user", "nobody"], b"x\n"), 67);
    assert_exit(
        &deliver(&spool, &["--user", "carol", "--from", "a b"], b"x\n"),
        64,
    );

    let server = start_on_configured_port(&spool);
    let carol = server.inbox("carol", "carol-pw");
    assert_eq!(carol.len(), 2);
    assert_eq!(
        carol[1],
        b"Return-Path: <>\r\nDelivered-To: <carol>\r\nSubject: direct\r\n\r\nbody two\r\n"
    );
    assert_eq!(server.deliveries("deliver", "ok"), 0.0);
}

#[test]
fn deliver_command_does_not_hand_mail_to_another_spools_server() {
    // A server for another spool listens on this spool's configured LMTP port.
    let other = Spool::new();
    let server = Server::start(other.path(), Some("127.0.0.1:0"));
    let spool = Spool::new();
    spool.reg_set("LmtpListen", &server.lmtp().to_string());
    assert_exit(
        &deliver(&spool, &["--user", "carol"], b"Subject: mine\n\nx\n"),
        0,
    );
    assert!(server.inbox("carol", "carol-pw").is_empty());
    assert_eq!(server.deliveries("deliver", "ok"), 0.0);

    let mine = Server::start(spool.path(), Some("127.0.0.1:0"));
    let carol = mine.inbox("carol", "carol-pw");
    assert_eq!(carol.len(), 1);
    assert!(carol[0].ends_with(b"Subject: mine\r\n\r\nx\r\n"));
}

#[test]
fn deliver_command_too_big_is_a_data_error() {
    let spool = Spool::new();
    spool.reg_set("MaxLiteralSize", "100");
    spool.reg_set("LmtpListen", &format!("127.0.0.1:{}", free_port()));
    let out = deliver(&spool, &["--user", "carol"], &[b'x'; 200]);
    assert_exit(&out, 65);
}
