//! TLS end to end: IMAPS and STARTTLS with real clients (Python's ssl and imaplib, openssl
//! s_client, curl), the capabilities and login policy around STARTTLS, the STARTTLS command
//! injection defence, certificates that cannot be used (reported with their path, the one in
//! force kept), renewal and settings changes without a restart, the handshake metrics, and
//! the session machinery (IDLE pushes, pacing, pipelining, shutdown, large uploads) over TLS.
//!
//! Certificates come from a test CA made with rcgen; every server listens on ephemeral
//! 127.0.0.1 ports only.

mod common;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use common::pki::{Leaf, Pki};
use common::{Server, Spool, scrape};

const HANDSHAKES: &str = "hato_tls_handshakes_total";
/// How long any one wait may take (reads, reloads, metrics).
const LIMIT: Duration = Duration::from_secs(10);
/// The certificate and key, relative to the spool (as the settings name them).
const CERT: &str = "tls/cert.pem";
const KEY: &str = "tls/key.pem";

// ---------------------------------------------------------------------------------------------
// Certificates (the CA is tests/common/pki.rs).

/// Replaces a file at once (write, then rename), as a renewal tool would.
fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write the new file");
    fs::rename(&tmp, path).expect("rename it into place");
}

/// Writes `leaf` as the spool's certificate and key: the key first, then the certificate.
fn install(spool: &Path, leaf: &Leaf) {
    fs::create_dir_all(spool.join("tls")).expect("tls dir");
    put(&spool.join(KEY), &leaf.key);
    put(&spool.join(CERT), &leaf.cert);
}

/// A spool whose settings name `leaf` (by relative paths), with the CA in `ca.pem`.
fn tls_spool(pki: &Pki, leaf: &Leaf) -> Spool {
    let spool = Spool::new();
    install(spool.path(), leaf);
    fs::write(ca_file(&spool), pki.ca.pem()).expect("write the CA");
    spool.reg_set("TlsCertificate", CERT);
    spool.reg_set("TlsKey", KEY);
    spool
}

fn ca_file(spool: &Spool) -> PathBuf {
    spool.path().join("ca.pem")
}

/// Starts the server with IMAPS on an ephemeral port; returns it and the IMAPS address.
fn start(spool: &Spool) -> (Server, SocketAddr) {
    let server = Server::start_with(
        spool.path(),
        &["--imaps", "127.0.0.1:0", "--lmtp", "127.0.0.1:0"],
    );
    let imaps = server
        .announced("IMAPS")
        .expect("the IMAPS address is announced before the IMAP line");
    assert!(imaps.ip().is_loopback() && imaps.port() != 0, "{imaps}");
    (server, imaps)
}

// ---------------------------------------------------------------------------------------------
// A small IMAP client, plain or over rustls.

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).expect("read timeout");
    stream
        .set_write_timeout(Some(LIMIT))
        .expect("write timeout");
    stream
}

/// Runs a TLS handshake for `localhost` on `tcp`.
fn handshake(
    config: &Arc<ClientConfig>,
    mut tcp: TcpStream,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp)? == (0, 0) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

struct Imap {
    stream: Stream,
    buf: Vec<u8>,
    greeting: String,
}

impl Imap {
    fn plain(addr: SocketAddr) -> Imap {
        Imap::greeted(Stream::Plain(tcp(addr)))
    }

    fn imaps(addr: SocketAddr, pki: &Pki) -> Imap {
        Imap::try_imaps(addr, pki).expect("IMAPS handshake")
    }

    fn try_imaps(addr: SocketAddr, pki: &Pki) -> io::Result<Imap> {
        let tls = handshake(&pki.client, tcp(addr))?;
        Ok(Imap::greeted(Stream::Tls(Box::new(tls))))
    }

    fn greeted(stream: Stream) -> Imap {
        let mut c = Imap {
            stream,
            buf: Vec::new(),
            greeting: String::new(),
        };
        c.greeting = c.line();
        assert!(
            c.greeting.starts_with("* OK "),
            "greeting: {:?}",
            c.greeting
        );
        c
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line, CRLF stripped; `None` at end of stream.
    fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    fn line(&mut self) -> String {
        self.next_line().expect("read a line").unwrap_or_default()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().expect("read a literal") > 0, "end of stream");
        }
        self.buf.drain(..n).collect()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    fn until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let Some(line) = self.next_line().expect("read a line") else {
                panic!("connection closed before {tag} was answered; got {untagged:?}");
            };
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    fn run(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(tag).1
    }

    /// The `* CAPABILITY` line of a CAPABILITY command.
    fn capability(&mut self, tag: &str) -> String {
        self.send(format!("{tag} CAPABILITY\r\n").as_bytes());
        let (untagged, tagged) = self.until_tagged(tag);
        assert!(tagged.starts_with(&format!("{tag} OK")), "{tagged}");
        untagged
            .into_iter()
            .find(|l| l.starts_with("* CAPABILITY "))
            .expect("a CAPABILITY response")
    }

    fn login(&mut self, tag: &str) {
        let answer = self.run(tag, "LOGIN carol carol-pw");
        assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
    }

    /// APPENDs `message` to INBOX; returns the tagged answer.
    fn append(&mut self, tag: &str, message: &[u8]) -> String {
        self.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", message.len()).as_bytes());
        self.send(message);
        self.send(b"\r\n");
        self.until_tagged(tag).1
    }

    /// The bytes of the message with `uid` in the selected mailbox.
    fn fetch(&mut self, tag: &str, uid: u32) -> Vec<u8> {
        self.send(format!("{tag} UID FETCH {uid} (BODY.PEEK[])\r\n").as_bytes());
        let mut body = None;
        loop {
            let line = self.line();
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.starts_with(&format!("{tag} OK")), "{line}");
                return body.expect("a BODY[] in the answer");
            }
            if let Some(size) = line
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                body = Some(self.bytes(size));
            }
            assert!(!line.is_empty(), "connection closed during FETCH");
        }
    }

    /// After the `OK` to STARTTLS was read: the handshake. Nothing may have come in between.
    fn starttls(&mut self, pki: &Pki) -> io::Result<()> {
        assert!(
            self.buf.is_empty(),
            "the server sent {:?} after its OK to STARTTLS",
            String::from_utf8_lossy(&self.buf)
        );
        let Stream::Plain(tcp) = &self.stream else {
            panic!("TLS is already on");
        };
        let tcp = tcp.try_clone()?;
        self.stream = Stream::Tls(Box::new(handshake(&pki.client, tcp)?));
        Ok(())
    }

    /// The server's certificate (DER).
    fn peer_cert(&self) -> Vec<u8> {
        let Stream::Tls(tls) = &self.stream else {
            panic!("not a TLS connection");
        };
        tls.conn.peer_certificates().expect("a certificate")[0].to_vec()
    }

    fn version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.stream {
            Stream::Tls(tls) => tls.conn.protocol_version(),
            Stream::Plain(_) => None,
        }
    }
}

/// A message of `lines` lines, CRLF throughout.
fn message(subject: &str, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@example.com>\r\nTo: Carol <carol@example.com>\r\nSubject: {subject}\r\n\r\n"
    );
    for i in 0..lines {
        m.push_str(&format!("line {i:05} of {subject}\r\n"));
    }
    m.into_bytes()
}

/// Appends one message for carol over the plain port (loopback may log in in the clear);
/// checks it got UID 1.
fn append_first(server: &Server, msg: &[u8]) {
    let mut c = Imap::plain(server.imap);
    c.login("l");
    let answer = c.append("a", msg);
    assert!(
        answer.contains("[APPENDUID ") && answer.contains(" 1]"),
        "{answer}"
    );
    assert!(c.run("z", "LOGOUT").starts_with("z OK"));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// The handshake counter summed over the workers, e.g. `handshakes(m, "ok", Some("1.3"))`.
fn handshakes(metrics: SocketAddr, result: &str, version: Option<&str>) -> f64 {
    let result = format!("result=\"{result}\"");
    let version = version.map(|v| format!("version=\"{v}\""));
    scrape(metrics)
        .lines()
        .filter(|l| l.starts_with(&format!("{HANDSHAKES}{{")))
        .filter(|l| l.contains(&result) && version.as_ref().is_none_or(|v| l.contains(v)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until the counter reaches `want`; the server counts after the handshake.
fn wait_handshakes(metrics: SocketAddr, result: &str, version: Option<&str>, want: f64) -> f64 {
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = handshakes(metrics, result, version);
        if got >= want || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------------
// A server whose log (stderr) is kept, for the certificate error reports.

struct Logged {
    child: Child,
    imap: SocketAddr,
    imaps: SocketAddr,
    metrics: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn start(spool: &Spool) -> Logged {
        let metrics: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .expect("addr");
        let mut child = Command::new(common::BIN)
            .args(["serve", "--spool"])
            .arg(spool.path())
            .args(["--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0"])
            .args(["--lmtp", "127.0.0.1:0", "--metrics"])
            .arg(metrics.to_string())
            .env("HATO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hato serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("hato: {line}");
                sink.lock().expect("log").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut imaps = None;
        let imap = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("hato: listening for IMAP on ") {
                        break addr.parse().expect("IMAP address");
                    }
                    if let Some(addr) = line.strip_prefix("hato: listening for IMAPS on ") {
                        imaps = Some(addr.parse().expect("IMAPS address"));
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hato did not start: {e}");
                }
            }
        };
        let server = Logged {
            child,
            imap,
            imaps: imaps.expect("IMAPS announced (a certificate is configured)"),
            metrics,
            log,
        };
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(metrics).is_err() {
            assert!(
                Instant::now() < deadline,
                "no metrics listener on {metrics}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Waits (bounded) for a log line holding every one of `needles`; returns it.
    fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let found = self
                .log
                .lock()
                .expect("log")
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?}; the log: {:#?}",
                self.log.lock().expect("log")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tries IMAPS until it works (bounded): a certificate reload takes up to a refresh period.
fn imaps_once_loaded(addr: SocketAddr, pki: &Pki, want: &[u8]) -> Imap {
    let deadline = Instant::now() + LIMIT;
    loop {
        match Imap::try_imaps(addr, pki) {
            Ok(c) if c.peer_cert() == want => return c,
            Ok(_) => {}
            Err(e) => assert!(
                Instant::now() < deadline,
                "IMAPS still fails after {LIMIT:?}: {e}"
            ),
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not taken within {LIMIT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// External programs, bounded in time.

struct Ran {
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

/// Runs `cmd` with `input` on stdin (then closed); killed after `limit`.
fn run_bounded(cmd: &mut Command, input: &[u8], limit: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let _ = writer.join();
    Ran {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Python's ssl and imaplib.

#[test]
fn python_imaplib_over_imaps_and_starttls_fetches_messages_intact() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, imaps) = start(&spool);
    let out = server.python(
        "tls_clients.py",
        &[
            &imaps.port().to_string(),
            ca_file(&spool).to_str().expect("utf-8 path"),
            "carol",
            "carol-pw",
        ],
    );
    assert!(out.contains("tls clients checked"), "{out}");
    assert!(out.contains("VERSION imaps TLSv1.3"), "{out}");
    assert!(out.contains("VERSION starttls TLSv1.3"), "{out}");
    assert!(out.contains("VERSION imaps-1.2 TLSv1.2"), "{out}");
    // IMAPS and STARTTLS with 1.3, one with 1.2, and the client that refused the certificate.
    let m = server.metrics;
    assert!(
        wait_handshakes(m, "ok", Some("1.3"), 2.0) >= 2.0,
        "{}",
        scrape(m)
    );
    assert!(
        wait_handshakes(m, "ok", Some("1.2"), 1.0) >= 1.0,
        "{}",
        scrape(m)
    );
    assert!(
        wait_handshakes(m, "failed", Some("none"), 1.0) >= 1.0,
        "{}",
        scrape(m)
    );
    assert_eq!(handshakes(m, "ok", Some("other")), 0.0, "{}", scrape(m));
}

// 2. openssl s_client.

/// COMPRESS=DEFLATE inside TLS (and, for comparison, on a plain connection), driven by
/// Python's zlib: a 1 MB message goes in and comes back intact, and IDLE pushes arrive.
#[test]
fn compress_deflate_works_inside_tls() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, imaps) = start(&spool);
    let out = server.python(
        "compress_clients.py",
        &[
            &imaps.port().to_string(),
            ca_file(&spool).to_str().expect("utf-8 path"),
            "carol",
            "carol-pw",
        ],
    );
    assert!(out.contains("compress clients checked"), "{out}");
    // The text compresses: the 1 MB message and the rest crossed the wire in far less.
    for how in ["plain", "imaps"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("COMPRESSED {how} ")))
            .unwrap_or_else(|| panic!("no {how} figures in {out}"));
        let figures: Vec<u64> = line
            .split_whitespace()
            .skip(2)
            .map(|n| n.parse().expect("a number"))
            .collect();
        assert!(figures[0] * 4 < figures[1], "{line}");
    }
}

#[test]
fn openssl_s_client_logs_in_and_fetches_over_starttls_and_imaps() {
    common::ensure_command("openssl", "openssl");
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, imaps) = start(&spool);
    let msg = message("openssl", 20);
    append_first(&server, &msg);
    let ca = ca_file(&spool);
    let input = b"a LOGIN carol carol-pw\r\nb SELECT INBOX\r\nc UID FETCH 1 BODY[]\r\nd LOGOUT\r\n";
    for (how, addr, starttls) in [("STARTTLS", server.imap, true), ("IMAPS", imaps, false)] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
            .arg(&ca)
            .args([
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-servername",
                "localhost",
                "-ign_eof",
            ]);
        if starttls {
            cmd.args(["-starttls", "imap"]);
        }
        let ran = run_bounded(&mut cmd, input, Duration::from_secs(30));
        let text = ran.text();
        assert!(ran.status.is_some_and(|s| s.success()), "{how}: {text}");
        for needle in [
            &b"a OK"[..],
            b"b OK",
            b"c OK",
            b"d OK",
            b"Verify return code: 0 (ok)",
        ] {
            assert!(
                contains(&ran.stdout, needle),
                "{how}: no {:?} in {text}",
                String::from_utf8_lossy(needle)
            );
        }
        assert!(
            contains(&ran.stdout, &msg),
            "{how}: message not fetched: {text}"
        );
        assert!(
            contains(&ran.stdout, b"TLSv1.3") || contains(&ran.stdout, b"TLSv1.2"),
            "{how}: TLS version not reported: {text}"
        );
    }
    assert!(wait_handshakes(server.metrics, "ok", None, 2.0) >= 2.0);
}

// 3. curl.

#[test]
fn curl_fetches_a_message_over_imaps_and_starttls() {
    common::ensure_command("curl", "curl");
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, imaps) = start(&spool);
    let msg = message("curl", 40);
    append_first(&server, &msg);
    let ca = ca_file(&spool);
    for (how, url, extra) in [
        (
            "IMAPS",
            format!("imaps://127.0.0.1:{}/INBOX;UID=1", imaps.port()),
            None,
        ),
        (
            "STARTTLS",
            format!("imap://127.0.0.1:{}/INBOX;UID=1", server.imap.port()),
            Some("--ssl-reqd"),
        ),
    ] {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-v", "--max-time", "20", "--cacert"])
            .arg(&ca)
            .args(["--user", "carol:carol-pw"])
            .args(extra)
            .arg(&url);
        let ran = run_bounded(&mut cmd, b"", Duration::from_secs(30));
        let text = ran.text();
        assert!(ran.status.is_some_and(|s| s.success()), "{how}: {text}");
        assert!(ran.stdout == msg, "{how}: another body came back: {text}");
        assert!(ran.stderr.contains("TLSv1."), "{how}: {text}");
    }
    assert!(wait_handshakes(server.metrics, "ok", None, 2.0) >= 2.0);
}

// 4. Capabilities and the login policy.

#[test]
fn starttls_is_advertised_on_the_plain_port_until_it_is_used() {
    let pki = Pki::new();
    let leaf = pki.valid();
    let spool = tls_spool(&pki, &leaf);
    let (server, imaps) = start(&spool);

    let mut c = Imap::plain(server.imap);
    assert!(c.greeting.contains(" STARTTLS"), "{}", c.greeting);
    let caps = c.capability("c1");
    assert!(caps.contains(" STARTTLS"), "{caps}");
    // Loopback may log in in the clear by default (PlaintextAuth.1 = 1).
    assert!(
        caps.contains(" AUTH=PLAIN") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(c.run("s", "STARTTLS").starts_with("s OK"));
    c.starttls(&pki).expect("handshake after STARTTLS");
    assert_eq!(c.peer_cert(), leaf.der);
    let caps = c.capability("c2");
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(
        caps.contains(" AUTH=PLAIN") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    let again = c.run("t", "STARTTLS");
    assert!(again.starts_with("t BAD"), "{again}");
    c.login("l");
    assert!(!c.capability("c3").contains("STARTTLS"));
    assert!(c.run("z", "LOGOUT").starts_with("z OK"));

    // IMAPS: no STARTTLS, logins allowed.
    let mut s = Imap::imaps(imaps, &pki);
    assert!(!s.greeting.contains("STARTTLS"), "{}", s.greeting);
    let caps = s.capability("c");
    assert!(
        !caps.contains("STARTTLS") && caps.contains(" AUTH=PLAIN"),
        "{caps}"
    );
    s.login("l");
}

#[test]
fn with_plaintext_auth_never_logins_need_tls() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    spool.reg_set("PlaintextAuth", "0");
    let (server, imaps) = start(&spool);

    let mut c = Imap::plain(server.imap);
    assert!(c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
    let caps = c.capability("c1");
    assert!(
        caps.contains(" STARTTLS") && caps.contains(" LOGINDISABLED"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH="), "{caps}");
    let login = c.run("l", "LOGIN carol carol-pw");
    assert!(login.starts_with("l NO [PRIVACYREQUIRED]"), "{login}");
    // AUTHENTICATE PLAIN with an initial response (SASL-IR): "\0carol\0carol-pw".
    let auth = c.run("a", "AUTHENTICATE PLAIN AGNhcm9sAGNhcm9sLXB3");
    assert!(auth.starts_with("a NO [PRIVACYREQUIRED]"), "{auth}");
    // Still not logged in.
    assert!(!c.run("x", "SELECT INBOX").starts_with("x OK"));

    assert!(c.run("s", "STARTTLS").starts_with("s OK"));
    c.starttls(&pki).expect("handshake after STARTTLS");
    let caps = c.capability("c2");
    assert!(
        caps.contains(" AUTH=PLAIN") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(!caps.contains("STARTTLS"), "{caps}");
    c.login("l2");
    assert!(c.run("x2", "SELECT INBOX").starts_with("x2 OK"));

    let mut s = Imap::imaps(imaps, &pki);
    assert!(!s.greeting.contains("LOGINDISABLED"), "{}", s.greeting);
    s.login("l");
}

#[test]
fn without_a_certificate_there_is_no_starttls_and_no_imaps() {
    let spool = Spool::new();
    // PlaintextAuth.1 applies only while TLS is available: logins stay possible here.
    spool.reg_set("PlaintextAuth", "0");
    let server = Server::start_with(
        spool.path(),
        &["--imaps", "127.0.0.1:0", "--lmtp", "127.0.0.1:0"],
    );
    assert_eq!(server.announced("IMAPS"), None, "{:?}", server.stdout);
    let mut c = Imap::plain(server.imap);
    assert!(!c.greeting.contains("STARTTLS"), "{}", c.greeting);
    let caps = c.capability("c");
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(
        caps.contains(" AUTH=PLAIN") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    let answer = c.run("s", "STARTTLS");
    assert!(answer.starts_with("s NO"), "{answer}");
    // The session goes on in the clear.
    c.login("l");
    assert!(c.run("x", "SELECT INBOX").starts_with("x OK"));
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, _) = start(&spool);
    let mut c = Imap::plain(server.imap);
    // A man in the middle appends commands to the client's STARTTLS, in the same packet.
    c.send(b"a STARTTLS\r\nb LOGIN carol carol-pw\r\nb2 CAPABILITY\r\n");
    let ok = c.line();
    assert!(ok.starts_with("a OK"), "{ok}");
    // Nothing more in the clear, and the handshake works (the rest was not taken as TLS).
    c.starttls(&pki)
        .expect("handshake after a pipelined STARTTLS");
    c.send(b"c NOOP\r\n");
    let (untagged, tagged) = c.until_tagged("c");
    assert!(tagged.starts_with("c OK"), "{tagged}");
    assert!(
        untagged.is_empty(),
        "a command pipelined in the clear was answered: {untagged:?}"
    );
    // Nor did the injected LOGIN take effect.
    let select = c.run("d", "SELECT INBOX");
    assert!(!select.starts_with("d OK"), "{select}");
    assert!(c.run("e", "NOOP").starts_with("e OK"));
    assert!(c.run("f", "LOGOUT").starts_with("f OK"));
}

// 5. Certificates that cannot be used.

#[test]
fn an_expired_certificate_is_reported_and_its_renewal_taken_without_restart() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.expired());
    let server = Logged::start(&spool);
    let cert = spool.path().join(CERT);
    let line = server.wait_log(&[&cert.display().to_string(), "expired"]);
    assert!(line.contains("TLS stays off until this is fixed"), "{line}");
    assert!(line.contains("ERROR"), "{line}");

    // IMAPS is refused (and counted), STARTTLS is not offered.
    let failed = handshakes(server.metrics, "failed", Some("none"));
    let refused = Imap::try_imaps(server.imaps, &pki);
    assert!(refused.is_err(), "IMAPS worked with an expired certificate");
    assert!(wait_handshakes(server.metrics, "failed", None, failed + 1.0) >= failed + 1.0);
    let mut c = Imap::plain(server.imap);
    assert!(!c.greeting.contains("STARTTLS"), "{}", c.greeting);
    assert!(c.run("s", "STARTTLS").starts_with("s NO"));

    // The renewal is taken without a restart.
    let renewed = pki.valid();
    install(spool.path(), &renewed);
    let mut s = imaps_once_loaded(server.imaps, &pki, &renewed.der);
    s.login("l");
    assert!(s.run("n", "NOOP").starts_with("n OK"));
    assert!(wait_handshakes(server.metrics, "ok", None, 1.0) >= 1.0);
    let mut c = Imap::plain(server.imap);
    assert!(c.greeting.contains(" STARTTLS"), "{}", c.greeting);
    assert!(c.run("s", "STARTTLS").starts_with("s OK"));
    c.starttls(&pki).expect("STARTTLS after the renewal");
    c.login("l");
}

#[test]
fn a_key_that_does_not_match_is_reported_and_the_certificate_in_force_kept() {
    let pki = Pki::new();
    let first = pki.valid();
    let spool = tls_spool(&pki, &first);
    let server = Logged::start(&spool);
    let cert = spool.path().join(CERT).display().to_string();
    let key = spool.path().join(KEY).display().to_string();

    let msg = message("kept", 5);
    let mut s = Imap::imaps(server.imaps, &pki);
    s.login("l");
    assert!(s.append("a", &msg).starts_with("a OK"));
    assert!(s.run("s", "SELECT INBOX").starts_with("s OK"));

    // A new certificate, but the key stays the old one.
    let second = pki.valid();
    put(&spool.path().join(CERT), &second.cert);
    let line = server.wait_log(&[&cert, &key, "do not go together"]);
    assert!(line.contains("the certificate in force is kept"), "{line}");
    assert_eq!(s.fetch("f1", 1), msg, "the open session goes on");
    let again = Imap::imaps(server.imaps, &pki);
    assert_eq!(
        again.peer_cert(),
        first.der,
        "the old certificate stays in force"
    );
    let mut c = Imap::plain(server.imap);
    assert!(c.run("t", "STARTTLS").starts_with("t OK"));
    c.starttls(&pki)
        .expect("STARTTLS with the kept certificate");
    assert_eq!(c.peer_cert(), first.der);

    // Not PEM at all: reported too, still kept.
    put(&spool.path().join(CERT), "this is not a certificate\n");
    let line = server.wait_log(&[&cert, "no PEM certificate"]);
    assert!(line.contains("the certificate in force is kept"), "{line}");
    assert_eq!(Imap::imaps(server.imaps, &pki).peer_cert(), first.der);

    // The matching key arrives: the new certificate is taken.
    install(spool.path(), &second);
    imaps_once_loaded(server.imaps, &pki, &second.der).login("l");
    assert_eq!(s.fetch("f2", 1), msg, "the open session still goes on");
    assert_eq!(s.peer_cert(), first.der);
}

#[test]
fn garbage_on_the_imaps_port_is_a_failed_handshake_and_the_server_goes_on() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (server, imaps) = start(&spool);
    let failed = handshakes(server.metrics, "failed", Some("none"));
    let garbage: [&[u8]; 3] = [
        // Plain IMAP on the IMAPS port.
        b"a LOGIN carol carol-pw\r\n",
        // A TLS record header announcing a huge handshake, then noise.
        b"\x16\x03\x01\xff\xff\x01\x00\xff\xfb\x03\x03garbage garbage garbage",
        // An HTTP request.
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let mut stream = tcp(imaps);
        stream.write_all(bytes).expect("send garbage");
        let mut rest = Vec::new();
        // Closed (an alert, then end of stream; or a reset), not left hanging.
        let closed = stream.read_to_end(&mut rest);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
            "garbage {i}: the server did not close the connection: {closed:?}"
        );
        assert!(
            !contains(&rest, b"OK"),
            "garbage {i}: answered in the clear"
        );
    }
    let want = failed + garbage.len() as f64;
    assert_eq!(
        wait_handshakes(server.metrics, "failed", Some("none"), want),
        want,
        "{}",
        scrape(server.metrics)
    );
    // The server keeps serving, TLS and plain.
    let mut s = Imap::imaps(imaps, &pki);
    s.login("l");
    let mut c = Imap::plain(server.imap);
    c.login("l");
    assert!(wait_handshakes(server.metrics, "ok", None, 1.0) >= 1.0);
}

// 6. Renewal with sessions open.

#[test]
fn sessions_opened_before_a_renewal_keep_working() {
    let pki = Pki::new();
    let first = pki.valid();
    let spool = tls_spool(&pki, &first);
    let (server, imaps) = start(&spool);
    let msg = message("renewal", 300);

    let mut s = Imap::imaps(imaps, &pki);
    s.login("l");
    assert!(s.append("a", &msg).starts_with("a OK"));
    assert!(s.run("s", "SELECT INBOX").starts_with("s OK"));
    let mut t = Imap::plain(server.imap);
    assert!(t.run("t", "STARTTLS").starts_with("t OK"));
    t.starttls(&pki).expect("STARTTLS");
    t.login("l");
    assert!(t.run("s", "SELECT INBOX").starts_with("s OK"));
    assert_eq!(t.version(), Some(rustls::ProtocolVersion::TLSv1_3));

    let open = |want: f64| {
        let deadline = Instant::now() + LIMIT;
        loop {
            let got = server.metric_sum("hato_tls_sessions", &[]);
            if got == want || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(open(2.0), 2.0, "TLS sessions open");

    let second = pki.valid();
    install(spool.path(), &second);
    let mut fresh = imaps_once_loaded(imaps, &pki, &second.der);
    fresh.login("l");
    assert!(fresh.run("s", "SELECT INBOX").starts_with("s OK"));
    assert_eq!(fresh.fetch("f", 1), msg);

    for (name, c) in [("IMAPS", &mut s), ("STARTTLS", &mut t)] {
        assert_eq!(c.peer_cert(), first.der, "{name}");
        assert_eq!(c.fetch("f", 1), msg, "{name}: the session goes on");
        assert!(c.run("n", "NOOP").starts_with("n OK"), "{name}");
        c.send(b"z LOGOUT\r\n");
        let (untagged, tagged) = c.until_tagged("z");
        assert!(
            untagged.iter().any(|l| l.starts_with("* BYE")),
            "{name}: {untagged:?}"
        );
        assert!(tagged.starts_with("z OK"), "{name}: {tagged}");
    }
}

// 7. The session machinery over TLS.

#[test]
fn idle_pushes_pacing_pipelining_and_shutdown_work_over_tls() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    spool.reg_set("Workers", "2");
    spool.reg_set("IDLELoop", "3600"); // only a push can deliver within the test
    spool.reg_set("NOOPRateLimit", "10");
    spool.reg_set("MaxPipelined", "4");
    let (server, imaps) = start(&spool);

    // IDLE over IMAPS and over STARTTLS: a change made elsewhere is pushed.
    let mut idlers = Vec::new();
    for how in ["IMAPS", "STARTTLS"] {
        let mut c = if how == "IMAPS" {
            Imap::imaps(imaps, &pki)
        } else {
            let mut c = Imap::plain(server.imap);
            assert!(c.run("t", "STARTTLS").starts_with("t OK"));
            c.starttls(&pki).expect("STARTTLS");
            c
        };
        c.login("l");
        assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
        c.send(b"i IDLE\r\n");
        assert_eq!(c.line(), "+ idling", "{how}");
        idlers.push((how, c));
    }
    let mut writer = Imap::plain(server.imap);
    writer.login("l");
    assert!(
        writer
            .append("a", &message("pushed", 3))
            .starts_with("a OK")
    );
    for (how, c) in &mut idlers {
        let pushed = c.line();
        assert_eq!(pushed, "* 1 EXISTS", "{how}");
        c.send(b"DONE\r\n");
        let (_, done) = c.until_tagged("i");
        assert!(done.starts_with("i OK"), "{how}: {done}");
    }

    // A NOOP storm is paced; every NOOP is answered, in order.
    let (_, storm) = &mut idlers[0];
    let burst: String = (0..25).map(|i| format!("n{i} NOOP\r\n")).collect();
    storm.send(burst.as_bytes());
    for i in 0..25 {
        let (_, tagged) = storm.until_tagged(&format!("n{i}"));
        assert!(tagged.starts_with(&format!("n{i} OK")), "{tagged}");
    }
    // A long pipeline is answered in turns, in order.
    let (_, piped) = &mut idlers[1];
    let pipeline: String = (0..50).map(|i| format!("p{i} CAPABILITY\r\n")).collect();
    piped.send(pipeline.as_bytes());
    for i in 0..50 {
        let (_, tagged) = piped.until_tagged(&format!("p{i}"));
        assert!(tagged.starts_with(&format!("p{i} OK")), "{tagged}");
    }

    // SIGTERM: every TLS session is told BYE (encrypted) before the server exits.
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    for (how, c) in &mut idlers {
        assert_eq!(c.line(), "* BYE Server shutting down", "{how}");
    }
}

// 8. Large uploads over TLS.

#[test]
fn a_large_append_over_imaps_is_answered_without_more_input() {
    let pki = Pki::new();
    let spool = tls_spool(&pki, &pki.valid());
    let (_server, imaps) = start(&spool);
    let msg = message("large", 200_000); // about 3.9 MB
    for round in 1..=20 {
        let mut s = Imap::imaps(imaps, &pki);
        s.login("l");
        s.send(format!("a APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes());
        s.send(&msg);
        s.send(b"\r\n");
        match s.next_line() {
            Ok(Some(answer)) => assert!(answer.starts_with("a OK"), "{answer}"),
            other => {
                // Any further byte from the client releases the stuck end of the literal.
                s.send(b"n NOOP\r\n");
                let late = s.line();
                panic!(
                    "round {round}: no answer to the APPEND within {LIMIT:?} ({other:?}); \
                     after one more command from the client it came: {late:?}"
                );
            }
        }
        assert!(s.run("s", "SELECT INBOX").starts_with("s OK"));
        assert_eq!(s.fetch("f", round), msg, "round {round}");
    }
}

#[test]
fn the_settings_can_name_other_files_or_turn_tls_off_live() {
    let pki = Pki::new();
    let first = pki.valid();
    let spool = tls_spool(&pki, &first);
    spool.reg_set("PlaintextAuth", "0");
    let (server, imaps) = start(&spool);
    assert_eq!(Imap::imaps(imaps, &pki).peer_cert(), first.der);

    // Other files (absolute paths this time).
    let other = pki.valid();
    let dir = spool.path().join("elsewhere");
    fs::create_dir_all(&dir).expect("dir");
    put(&dir.join("c.pem"), &other.cert);
    put(&dir.join("k.pem"), &other.key);
    spool.reg_set("TlsKey", dir.join("k.pem").to_str().expect("utf-8"));
    spool.reg_set("TlsCertificate", dir.join("c.pem").to_str().expect("utf-8"));
    imaps_once_loaded(imaps, &pki, &other.der).login("l");

    // No certificate named: TLS is off, so logins in the clear are allowed again.
    spool.reg_set("TlsCertificate", "");
    let deadline = Instant::now() + LIMIT;
    let mut c = loop {
        let c = Imap::plain(server.imap);
        if !c.greeting.contains("STARTTLS") {
            break c;
        }
        assert!(Instant::now() < deadline, "TLS still on: {}", c.greeting);
        thread::sleep(Duration::from_millis(100));
    };
    assert!(!c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
    assert!(c.run("s", "STARTTLS").starts_with("s NO"));
    c.login("l");
    assert!(
        Imap::try_imaps(imaps, &pki).is_err(),
        "IMAPS without a certificate"
    );

    // Named again: back on.
    spool.reg_set("TlsCertificate", CERT);
    spool.reg_set("TlsKey", KEY);
    imaps_once_loaded(imaps, &pki, &first.der).login("l");
    let c = Imap::plain(server.imap);
    assert!(c.greeting.contains(" STARTTLS"), "{}", c.greeting);
    assert!(c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
}
