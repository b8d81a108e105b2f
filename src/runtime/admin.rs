//! The admin socket: `<spool>/run/admin.sock`, for `hato who`, `hato kick`, `hato reload` and
//! `hato stats`.
//!
//! A Unix socket in a directory only its owner can enter, and each client's credentials checked
//! (`SO_PEERCRED`): root or the user hato runs as, nobody else. One request line per
//! connection, answered with text lines, then the connection closes. The questions about
//! sessions go to every worker through its notice channel and are answered from its own slab,
//! so the admin side takes no lock a worker holds.
//!
//! Requests: `who`, `kick <user> [<ip>]`, `reload`, `stats`. Answers start with `ok` or
//! `error <reason>`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tracing::warn;

use super::idle::{Notice, Senders};
use crate::config::SharedSettings;

/// How long the workers get to answer.
const WORKER_ANSWER: Duration = Duration::from_secs(5);

/// The socket's path in a spool.
pub fn socket_path(spool: &Path) -> PathBuf {
    spool.join("run").join("admin.sock")
}

/// One session, as `hato who` shows it.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub(crate) worker: usize,
    pub(crate) user: Option<String>,
    pub(crate) peer: SocketAddr,
    pub(crate) state: &'static str,
    pub(crate) tls: bool,
    /// Seconds since the client last sent something.
    pub(crate) idle_secs: u32,
    pub(crate) mailbox: Option<String>,
}

/// Binds the socket (replacing a stale one) and starts the thread that serves it.
pub(crate) fn spawn(spool: &Path, workers: Senders, settings: SharedSettings) -> io::Result<()> {
    let path = socket_path(spool);
    let dir = path.parent().unwrap_or(spool);
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let workers = Arc::new(workers);
    thread::Builder::new()
        .name("hato-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = serve(stream, &workers, &settings) {
                            warn!("admin socket: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("admin socket: accept failed: {e}");
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(drop)
}

/// Answers one client.
fn serve(stream: UnixStream, workers: &Senders, settings: &SharedSettings) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = io::BufWriter::new(stream.try_clone()?);
    let allowed = permitted(&stream)?;
    // The request is read either way, so that a refused client reads the refusal rather than
    // a broken pipe.
    let mut line = String::new();
    BufReader::new(stream.take(4096)).read_line(&mut line)?;
    if !allowed {
        writeln!(
            out,
            "error permission denied: only root or the server's user"
        )?;
        return out.flush();
    }
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("who"), None, ..) => {
            writeln!(out, "ok")?;
            for s in who(workers) {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.user.as_deref().unwrap_or("-"),
                    s.peer.ip(),
                    s.worker,
                    s.state,
                    if s.tls { "tls" } else { "plain" },
                    s.idle_secs,
                    s.mailbox.as_deref().unwrap_or("-"),
                )?;
            }
        }
        (Some("kick"), Some(user), ip, None) => {
            let ip = match ip.map(str::parse::<IpAddr>).transpose() {
                Ok(ip) => ip,
                Err(_) => {
                    writeln!(out, "error not an IP address: {}", ip.unwrap_or(""))?;
                    return out.flush();
                }
            };
            writeln!(out, "ok {}", kick(workers, user, ip))?;
        }
        (Some("reload"), None, ..) => {
            // The reload thread reads SIGHUP from its signalfd; the signal is blocked in
            // every thread, so it goes nowhere else.
            // SAFETY: kill(2) with our own pid and a signal every thread blocks.
            let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            if rc == 0 {
                writeln!(out, "ok reload requested")?;
            } else {
                writeln!(out, "error {}", io::Error::last_os_error())?;
            }
        }
        (Some("stats"), None, ..) => match scrape(settings.load().metrics_listen) {
            Ok(text) => {
                writeln!(out, "ok")?;
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    writeln!(out, "{line}")?;
                }
            }
            Err(e) => writeln!(out, "error reading the metrics: {e}")?,
        },
        _ => writeln!(
            out,
            "error unknown request {:?}; try who, kick USER [IP], reload, stats",
            line.trim()
        )?,
    }
    out.flush()
}

/// Whether the client is root or the user the server runs as.
fn permitted(stream: &UnixStream) -> io::Result<bool> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a valid, exclusively borrowed
    // ucred, and `len` is its exact size; the descriptor belongs to `stream`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    Ok(cred.uid == 0 || cred.uid == own)
}

/// Every worker's sessions.
fn who(workers: &Senders) -> Vec<SessionInfo> {
    let (tx, rx) = mpsc::channel();
    workers.broadcast(Notice::Who(tx));
    let mut all = Vec::new();
    for _ in 0..workers.len() {
        match rx.recv_timeout(WORKER_ANSWER) {
            Ok(sessions) => all.extend(sessions),
            Err(_) => break,
        }
    }
    all.sort_by(|a, b| (&a.user, a.peer).cmp(&(&b.user, b.peer)));
    all
}

/// Closes `user`'s sessions (from `ip` only, if given) on every worker; returns how many.
fn kick(workers: &Senders, user: &str, ip: Option<IpAddr>) -> usize {
    let (tx, rx) = mpsc::channel();
    workers.broadcast(Notice::Kick {
        user: user.into(),
        ip,
        reply: tx,
    });
    (0..workers.len())
        .map_while(|_| rx.recv_timeout(WORKER_ANSWER).ok())
        .sum()
}

/// The server's own `/metrics` text: `hato stats` shows what Prometheus sees.
fn scrape(addr: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        // HTTP/1.0: the answer comes whole, never chunked.
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}
