//! Test harness: runs the real `hato` binary on 127.0.0.1 with a temporary spool, and a tiny
//! line-oriented IMAP client for raw protocol checks.

#![allow(dead_code)]

pub mod dovecot;
pub mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_hato");

/// Makes sure a program from Debian is on PATH, installing `package` with apt-get when it is
/// not (the tests run as root here and in CI). Panics when it cannot be had.
pub fn ensure_command(command: &str, package: &str) {
    let present = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present(command) {
        return;
    }
    let _ = Command::new("apt-get").arg("update").status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        present(command),
        "{command} is needed; install Debian's {package}"
    );
}

/// Makes sure Python can import `module`, installing `package` from PyPI with pip when not.
pub fn ensure_python_module(module: &str, package: &str) {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable() {
        return;
    }
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let _ = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg(package)
            .status();
        if importable() {
            return;
        }
    }
    panic!("python3 cannot import {module}; install {package} from PyPI");
}

/// Runs `hato` with `args` to completion (for `user` and `reg`).
pub fn hato(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HATO_LOG", "warn")
        .output()
        .expect("run hato")
}

/// Runs `hato` and asserts success.
pub fn hato_ok(args: &[&str]) -> String {
    let out = hato(args);
    assert!(
        out.status.success(),
        "hato {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free port on 127.0.0.1 (for the metrics listener, whose port cannot be read back).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A spool with the test users and a short failed-login delay.
pub struct Spool {
    pub dir: tempfile::TempDir,
}

impl Spool {
    pub fn new() -> Spool {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool { dir };
        for (user, password, scheme) in [
            ("alice", "alice-pw", "argon2id"),
            ("bob", "bob pw \"quoted\"", "sha512-crypt"),
            ("carol", "carol-pw", "plain"),
        ] {
            spool.hato_ok(&[
                "user",
                "add",
                user,
                "--password",
                password,
                "--scheme",
                scheme,
            ]);
        }
        spool.reg_set("AuthFailDelay", "50");
        // Tests log in wrongly on purpose; the per-address throttle has tests of its own.
        spool.reg_set("AuthThrottleAfter", "0");
        spool
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `hato <args> --spool <this spool>` and asserts success.
    pub fn hato_ok(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        let spool = self.path().to_str().expect("utf-8 temp path");
        all.extend(["--spool", spool]);
        hato_ok(&all)
    }

    /// Runs `hato <args> --spool <this spool>`.
    pub fn hato(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let spool = self.path().to_str().expect("utf-8 temp path");
        all.extend(["--spool", spool]);
        hato(&all)
    }

    /// Adds `user` with a PLAIN-scheme password (cheap to check: load and scale tests log in
    /// a lot).
    pub fn add_plain_user(&self, user: &str, password: &str) {
        self.hato_ok(&[
            "user",
            "add",
            user,
            "--password",
            password,
            "--scheme",
            "plain",
        ]);
    }

    pub fn reg_set(&self, name: &str, value: &str) {
        self.hato_ok(&["reg", "set", name, value]);
    }

    pub fn start(&self) -> Server {
        Server::start(self.path())
    }
}

/// The text of the metrics exporter at `metrics` (HTTP headers included).
pub fn scrape(metrics: SocketAddr) -> String {
    let mut stream = TcpStream::connect(metrics).expect("connect metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

/// A running server; killed (by pid) when dropped.
pub struct Server {
    child: Child,
    pub imap: SocketAddr,
    pub metrics: SocketAddr,
    pub stdout: Vec<String>,
}

impl Server {
    pub fn start(spool: &Path) -> Server {
        Server::start_with(spool, &[])
    }

    /// Starts `hato serve` with `extra` arguments; every stdout line before the IMAP line is
    /// kept in [`Server::stdout`].
    pub fn start_with(spool: &Path, extra: &[&str]) -> Server {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut child = Command::new(BIN)
            .args(["serve", "--spool"])
            .arg(spool)
            .args(["--imap", "127.0.0.1:0", "--metrics"])
            .arg(metrics.to_string())
            .args(extra)
            .env("HATO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hato serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let imap = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("hato: listening for IMAP on ") {
                        break addr.parse().expect("bound address");
                    }
                    lines.push(line);
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("hato did not start: {e}; output so far: {lines:?}");
                }
            }
        };
        let server = Server {
            child,
            imap,
            metrics,
            stdout: lines,
        };
        server.wait_for_metrics();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.imap)
    }

    fn wait_for_metrics(&self) {
        for _ in 0..100 {
            if TcpStream::connect(self.metrics).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("metrics listener did not come up on {}", self.metrics);
    }

    /// The exporter's text output.
    pub fn scrape(&self) -> String {
        scrape(self.metrics)
    }

    /// The address an `hato: listening for <what> on <addr>` line announced, if any.
    pub fn announced(&self, what: &str) -> Option<SocketAddr> {
        let prefix = format!("hato: listening for {what} on ");
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
    }

    /// The sum of the series of `name` whose labels include all of `labels` (0 when none).
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.scrape()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of one series, e.g. `hato_sessions{worker="0"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.scrape().lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.trim().parse().ok()
        })
    }

    /// Runs a Python test script against this server; asserts it succeeds.
    pub fn python(&self, script: &str, extra: &[&str]) -> String {
        let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "py", script]
            .iter()
            .collect();
        let out = Command::new("python3")
            .arg(&path)
            .arg(self.imap.ip().to_string())
            .arg(self.imap.port().to_string())
            .args(extra)
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{script} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw IMAP client: sends bytes, reads lines.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::greeted(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a connection made elsewhere (e.g. from another source address); reads the
    /// greeting.
    pub fn greeted(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut client = Client { stream, reader };
        let greeting = client.line();
        assert!(greeting.starts_with("* OK "), "greeting: {greeting}");
        client
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One response line, CRLF stripped; `None` at end of stream.
    pub fn next_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf).expect("read line");
        (n > 0).then(|| {
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string()
        })
    }

    /// Sets how long a read may wait.
    pub fn set_timeout(&mut self, limit: Duration) {
        self.stream
            .set_read_timeout(Some(limit))
            .expect("read timeout");
    }

    /// The buffered reader, for reads that may time out.
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }

    /// Exactly `n` bytes (a literal's content).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("read literal");
        buf
    }

    /// One response line, CRLF stripped; empty at end of stream.
    pub fn line(&mut self) -> String {
        self.next_line().unwrap_or_default()
    }

    /// Reads lines until the tagged answer for `tag`; returns (untagged lines, tagged line).
    /// Lines of literals count as untagged lines.
    pub fn until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let Some(line) = self.next_line() else {
                panic!("connection closed before {tag} was answered; got {untagged:?}");
            };
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    /// Sends `<tag> <command>\r\n` and returns the tagged answer line.
    pub fn run(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(tag).1
    }

    /// The connection, for a client that switches to another layer (COMPRESS, TLS) after an
    /// answer; nothing the server sent may be waiting unread.
    pub fn into_stream(self) -> TcpStream {
        assert!(
            self.reader.buffer().is_empty(),
            "unread input before the switch"
        );
        self.stream
    }

    /// Reads until end of stream; true when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}
