//! The NOOP path: in memory through the session (what the protocol costs) and as a real
//! round trip over loopback to the release server (what a client sees).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::path::Path;

use hato::imap::harness::Harness;

fn in_memory(c: &mut Criterion) {
    let mut h = Harness::logged_in(Path::new("/nonexistent/hato-test-spool"), "joe");
    c.bench_function("noop/session (in memory)", |b| {
        b.iter(|| {
            h.out.clear();
            h.on_input(std::hint::black_box(b"a1 NOOP\r\n"));
            std::hint::black_box(&h.out);
        })
    });
}

/// The storm's case: NOOP with INBOX selected and nothing changed since the last answer, which
/// is one generation compare.
fn in_memory_selected(c: &mut Criterion) {
    let spool = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::logged_in(spool.path(), "joe");
    for _ in 0..20 {
        h.feed(b"p APPEND INBOX {12+}\r\nSubject: x\r\n\r\n");
    }
    h.out.clear();
    h.feed(b"s SELECT INBOX\r\n");
    assert!(String::from_utf8_lossy(&h.out).contains("* 20 EXISTS"));
    c.bench_function("noop/session, INBOX selected, unchanged (in memory)", |b| {
        b.iter(|| {
            h.out.clear();
            h.on_input(std::hint::black_box(b"a1 NOOP\r\n"));
            std::hint::black_box(&h.out);
        })
    });
}

/// Starts `hato serve` from the same build on a temporary spool with one PLAIN user.
struct Server {
    child: std::process::Child,
    addr: String,
    _spool: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let bin = env!("CARGO_BIN_EXE_hato");
        let spool = tempfile::tempdir().expect("tempdir");
        let status = Command::new(bin)
            .args([
                "user",
                "add",
                "bench",
                "--password",
                "bench",
                "--scheme",
                "plain",
                "--spool",
            ])
            .arg(spool.path())
            .env("HATO_LOG", "error")
            .status()
            .expect("hato user add");
        assert!(status.success());
        // The benchmark sends NOOPs back to back, far past the storm guard's 20/s: without
        // lifting it, it would time the pacing.
        let status = Command::new(bin)
            .args(["reg", "set", "NOOPRateLimit", "0", "--spool"])
            .arg(spool.path())
            .status()
            .expect("hato reg set");
        assert!(status.success());
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--imap",
                "127.0.0.1:0",
                "--metrics",
                &metrics.to_string(),
                "--spool",
            ])
            .arg(spool.path())
            .env("HATO_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("hato serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = lines.next().expect("server output").expect("line");
            if let Some(a) = line.strip_prefix("hato: listening for IMAP on ") {
                break a.to_string();
            }
        };
        Server {
            child,
            addr,
            _spool: spool,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn round_trip(c: &mut Criterion) {
    let server = Server::start();
    let stream = TcpStream::connect(&server.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting");
    writer.write_all(b"l LOGIN bench bench\r\n").expect("login");
    line.clear();
    reader.read_line(&mut line).expect("login answer");
    assert!(line.starts_with("l OK"), "{line}");
    c.bench_function("noop/loopback round trip", |b| {
        b.iter(|| {
            writer.write_all(b"n NOOP\r\n").expect("send");
            line.clear();
            reader.read_line(&mut line).expect("answer");
            debug_assert!(line.starts_with("n OK"));
        })
    });
}

criterion_group!(benches, in_memory, in_memory_selected, round_trip);
criterion_main!(benches);
