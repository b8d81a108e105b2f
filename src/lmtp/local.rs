//! `hato deliver`: a local delivery command for an MTA (Postfix `mailbox_command`, Exim's pipe
//! transport, procmail-style setups).
//!
//! The message goes to the running server over LMTP when a server for *this* spool answers on
//! `LmtpListen.1` (checked with the `X-HATO-SPOOL` token of its LHLO answer), so its sessions
//! learn of the message at once. Otherwise it is dropped straight into the user's Maildir the
//! way every Maildir MDA does it: written to `tmp/`, fsynced, renamed into `new/`, the
//! directory fsynced. That path never touches the UID list, so it is safe whether or not a
//! server runs on the spool (a server that runs gives the message its UID when it next looks
//! at the folder, at SELECT, STATUS or CHECK, as for any other writer). [`super::deliver`]
//! assigns UIDs and is only safe inside the process that owns the spool, which is why this
//! command does not use it.
//!
//! The direct path keeps the user's quota as every Maildir++ MDA does (Courier's
//! `deliverquota`, maildrop): it checks `maildirsize` against the user's limits
//! (`QuotaStorage.1`, `QuotaMessages.1`, the passwd-file's `quota_rule`) before writing and
//! appends the new message to it afterwards; see [`crate::store::quota`].
//!
//! Exit statuses follow sendmail's `sysexits.h`, which MTAs map to bounce or retry:
//! [`DeliverError::exit_code`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tracing::{debug, warn};

use super::command::Address;
use super::recipients::Recipients;
use super::{DELIVER_CLIENT_NAME, Via, count_delivery, spool_token, trace_headers};
use crate::auth::PasswdFile;
use crate::config::{RegTree, Settings, SharedSettings};
use crate::store::quota::{self, QuotaLimits};
use crate::store::{ConfiguredQuota, QuotaPolicy as _, Store, StoreError};

/// How long to wait for the server to accept the connection before delivering directly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a message was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Handed to the running server over LMTP at this address.
    Lmtp(SocketAddr),
    /// Written into the Maildir: the file in `new/`.
    Direct(PathBuf),
}

/// Why `hato deliver` did not deliver.
#[derive(Debug, Error)]
pub enum DeliverError {
    #[error("no such user {0:?}")]
    UnknownUser(String),
    #[error("message too big: {0}")]
    TooBig(String),
    /// Retry later (the MTA keeps the message queued).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Refused for good (the MTA bounces).
    #[error("delivery refused: {0}")]
    Permanent(String),
    /// The user is over quota (LMTP `552 5.2.2`); the MTA bounces.
    #[error("mailbox full: {0}")]
    MailboxFull(String),
}

impl DeliverError {
    /// `sysexits.h`: 67 `EX_NOUSER`, 65 `EX_DATAERR`, 75 `EX_TEMPFAIL`, 69 `EX_UNAVAILABLE`,
    /// 73 `EX_CANTCREAT` for a full mailbox ("can't create user output file": Postfix bounces
    /// it, as `552 5.2.2` over LMTP is bounced; Exim fails the address).
    pub fn exit_code(&self) -> u8 {
        match self {
            DeliverError::UnknownUser(_) => 67,
            DeliverError::TooBig(_) => 65,
            DeliverError::Temporary(_) => 75,
            DeliverError::Permanent(_) => 69,
            DeliverError::MailboxFull(_) => 73,
        }
    }
}

/// `hato deliver` for one spool, with the settings of its reg tree.
pub struct LocalDelivery {
    spool: PathBuf,
    settings: Settings,
}

impl LocalDelivery {
    /// Reads the reg tree of `spool` (problems are logged; defaults are used).
    pub fn new(spool: &Path) -> LocalDelivery {
        let report = RegTree::for_spool(spool).load();
        for problem in &report.problems {
            warn!("reg tree: {problem}");
        }
        LocalDelivery {
            spool: spool.to_path_buf(),
            settings: report.settings,
        }
    }

    /// The largest message accepted (`MaxLiteralSize.1`).
    pub fn max_size(&self) -> u64 {
        self.settings.max_literal_size
    }

    /// Delivers `input` (a message as an MTA pipes it: LF or CRLF line ends, possibly an mbox
    /// `From ` line first, which is dropped) to `user`'s INBOX, with `sender` as the envelope
    /// sender (empty: `<>`).
    pub fn deliver(&self, user: &str, sender: &str, input: &[u8]) -> Result<Route, DeliverError> {
        if !self.spool.is_dir() {
            return Err(DeliverError::Temporary(format!(
                "spool {} does not exist",
                self.spool.display()
            )));
        }
        let message = normalize(input);
        let max = self.max_size();
        if message.len() as u64 > max {
            return Err(DeliverError::TooBig(format!(
                "{} bytes, MaxLiteralSize is {max}",
                message.len()
            )));
        }
        let addr = connectable(self.settings.lmtp_listen);
        match via_lmtp(addr, &spool_token(&self.spool), user, sender, &message) {
            Ok(()) => return Ok(Route::Lmtp(addr)),
            Err(Attempt::Answer(e)) => return Err(e),
            Err(Attempt::Unavailable(why)) => {
                debug!("no hato LMTP server for this spool ({why}); delivering directly");
            }
        }
        self.direct(user, sender, &message)
    }

    fn direct(&self, user: &str, sender: &str, message: &[u8]) -> Result<Route, DeliverError> {
        let recipients = Recipients::new(PasswdFile::new(self.settings.passwd_path(&self.spool)));
        let address = Address::of_user(user);
        let canonical = match recipients.resolve(&address) {
            Ok(Some(name)) => name,
            Ok(None) => return Err(DeliverError::UnknownUser(user.to_string())),
            Err(e) => return Err(DeliverError::Temporary(e.to_string())),
        };
        let mut copy = Vec::with_capacity(message.len() + 256);
        trace_headers(&mut copy, sender, user);
        copy.extend_from_slice(message);
        let store = Store::new(&self.spool);
        let passwd = PasswdFile::new(self.settings.passwd_path(&self.spool));
        let limits = ConfiguredQuota::new(SharedSettings::new(self.settings.clone()), passwd)
            .limits(&canonical);
        let result = drop_into_maildir(&store, &canonical, &copy, limits);
        count_delivery(Via::Deliver, result.is_ok());
        result.map(Route::Direct)
    }
}

/// Writes `message` into `user`'s INBOX `new/` as a Maildir MDA does (tmp, fsync, rename,
/// fsync of `new/`), within the user's quota `limits`; returns the file's path.
fn drop_into_maildir(
    store: &Store,
    user: &str,
    message: &[u8],
    limits: QuotaLimits,
) -> Result<PathBuf, DeliverError> {
    let temporary = |e: &dyn std::fmt::Display| DeliverError::Temporary(e.to_string());
    let mail = store.user(user).map_err(|e| match e {
        crate::store::StoreError::InvalidUser(_) => DeliverError::Permanent(e.to_string()),
        e => temporary(&e),
    })?;
    let root = mail.root();
    match quota::check(root, limits, message.len() as u64, 1) {
        Ok(()) => {}
        Err(e @ StoreError::OverQuota) => return Err(DeliverError::MailboxFull(e.to_string())),
        Err(e) => return Err(temporary(&e)),
    }
    let base = maildir_name(message);
    let tmp = root.join("tmp").join(&base);
    let target = root.join("new").join(&base);
    let io_error = |path: &Path, e: io::Error| temporary(&format!("{}: {e}", path.display()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(message)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&target, e));
    }
    let new_dir = root.join("new");
    File::open(&new_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(&new_dir, e))?;
    // Delivered: a failure to count it only costs accuracy until the next recalculation.
    let bytes = i64::try_from(message.len()).unwrap_or(i64::MAX);
    if let Err(e) = quota::record(root, limits, bytes, 1) {
        warn!(user, error = %e, "quota: cannot update maildirsize");
    }
    Ok(target)
}

/// A Maildir base name no other delivery picks, in Dovecot's style, with the size (`S=`) and
/// the CRLF size (`W=`, the same: the message has CRLF line ends).
fn maildir_name(message: &[u8]) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = super::hostname().replace(['/', ':', ','], "_");
    format!(
        "{}.M{}P{}Q{}.{host},S={},W={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        message.len(),
        message.len()
    )
}

/// The message as stored: without a leading mbox `From ` line, every line end CRLF, and a
/// final line end.
fn normalize(input: &[u8]) -> Vec<u8> {
    let mut input = input;
    if input.starts_with(b"From ") {
        input = match memchr::memchr(b'\n', input) {
            Some(i) => &input[i + 1..],
            None => &[],
        };
    }
    let mut out = Vec::with_capacity(input.len() + input.len() / 32 + 2);
    let mut rest = input;
    while let Some(i) = memchr::memchr(b'\n', rest) {
        let line = &rest[..i];
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        rest = &rest[i + 1..];
    }
    if !rest.is_empty() {
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The address to connect to for a listen address: a wildcard becomes loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Why the LMTP attempt did not deliver.
enum Attempt {
    /// No server for this spool (not listening, not hato, another spool, gone before DATA):
    /// deliver directly.
    Unavailable(String),
    /// The server answered; this is the answer (no direct delivery then).
    Answer(DeliverError),
}

struct Reply {
    code: u16,
    /// Every line's text after the code and separator.
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }

    fn into_error(self) -> DeliverError {
        let text = self.text();
        let enhanced = self.lines.first().map(String::as_str).unwrap_or("");
        match self.code {
            400..=499 => DeliverError::Temporary(text),
            550 | 551 | 553 if enhanced.starts_with("5.1.") => DeliverError::UnknownUser(text),
            552 if enhanced.starts_with("5.2.2") => DeliverError::MailboxFull(text),
            552 => DeliverError::TooBig(text),
            _ => DeliverError::Permanent(text),
        }
    }
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an LMTP reply"))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok(Reply { code, lines });
        }
        if lines.len() > 100 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
    }
}

/// `<user>` as a path: the user name, quoted when it is not a plain address.
fn path_of(user: &str) -> String {
    let plain = user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.@".contains(c) || !c.is_ascii());
    if plain && user.matches('@').count() <= 1 {
        format!("<{user}>")
    } else {
        let escaped = user.replace('\\', "\\\\").replace('"', "\\\"");
        format!("<\"{escaped}\">")
    }
}

/// One LMTP client connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Client {
    fn read(&mut self, what: &str) -> Result<Reply, Attempt> {
        read_reply(&mut self.reader).map_err(|e| unavailable(what, e))
    }

    fn command(&mut self, line: &str) -> Result<Reply, Attempt> {
        let w = &mut self.writer;
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\r\n"))
            .and_then(|()| w.flush())
            .map_err(|e| unavailable(line, e))?;
        self.read(line)
    }
}

fn unavailable(what: &str, e: io::Error) -> Attempt {
    Attempt::Unavailable(format!("{what}: {e}"))
}

fn via_lmtp(
    addr: SocketAddr,
    token: &str,
    user: &str,
    sender: &str,
    message: &[u8],
) -> Result<(), Attempt> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| unavailable(&format!("connect {addr}"), e))?;
    let setup = (|| {
        stream.set_read_timeout(Some(super::IDLE_TIMEOUT))?;
        stream.set_write_timeout(Some(super::IDLE_TIMEOUT))?;
        stream.try_clone()
    })();
    let reader = setup.map_err(|e| unavailable("socket", e))?;
    let mut client = Client {
        reader: BufReader::new(reader),
        writer: BufWriter::new(stream),
    };
    let greeting = client.read("greeting")?;
    if greeting.code != 220 {
        return Err(Attempt::Unavailable(format!(
            "greeting {}",
            greeting.text()
        )));
    }
    let lhlo = client.command(&format!("LHLO {DELIVER_CLIENT_NAME}"))?;
    let ours = format!("X-HATO-SPOOL {token}");
    if lhlo.code != 250 || !lhlo.lines.iter().any(|l| l.eq_ignore_ascii_case(&ours)) {
        let _ = client.command("QUIT");
        return Err(Attempt::Unavailable(
            "the server there does not serve this spool".into(),
        ));
    }
    let refused = |client: &mut Client, reply: Reply| {
        let _ = client.command("QUIT");
        Err(Attempt::Answer(reply.into_error()))
    };
    let mail = client.command(&format!("MAIL FROM:<{sender}> SIZE={}", message.len()))?;
    if mail.code != 250 {
        return refused(&mut client, mail);
    }
    let rcpt = client.command(&format!("RCPT TO:{}", path_of(user)))?;
    if rcpt.code != 250 {
        return refused(&mut client, rcpt);
    }
    let data = client.command("DATA")?;
    if data.code != 354 {
        return refused(&mut client, data);
    }
    // From here on the server may have the message: a failure is temporary, and never
    // followed by a direct delivery (that could store it twice).
    let temporary = |e: io::Error| Attempt::Answer(DeliverError::Temporary(e.to_string()));
    send_dot_stuffed(&mut client.writer, message).map_err(temporary)?;
    let done = read_reply(&mut client.reader).map_err(temporary)?;
    if done.code == 250 {
        let _ = client.command("QUIT");
        Ok(())
    } else {
        refused(&mut client, done)
    }
}

/// The message (CRLF line ends, ending in CRLF) with dot-stuffing, then the final `.` line.
fn send_dot_stuffed(writer: &mut impl Write, message: &[u8]) -> io::Result<()> {
    let mut rest = message;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        if rest[0] == b'.' {
            writer.write_all(b".")?;
        }
        writer.write_all(&rest[..end])?;
        rest = &rest[end..];
    }
    writer.write_all(b".\r\n")?;
    writer.flush()
}

impl Address {
    /// The address `hato deliver --user NAME` stands for (as if given in `RCPT TO:<NAME>`).
    pub(crate) fn of_user(user: &str) -> Address {
        let (local, domain) = match user.rsplit_once('@') {
            Some((l, d)) if !l.is_empty() && !d.is_empty() => (l.to_string(), Some(d.to_string())),
            _ => (user.to_string(), None),
        };
        Address {
            text: user.to_string(),
            local,
            domain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_line_ends_and_mbox_line() {
        assert_eq!(normalize(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(
            normalize(b"From someone Mon Jan  1 00:00:00 2024\nSubject: x\n\nhi\n"),
            b"Subject: x\r\n\r\nhi\r\n"
        );
        assert_eq!(normalize(b""), b"");
        assert_eq!(normalize(b"From: a@b\n"), b"From: a@b\r\n");
    }

    #[test]
    fn dot_stuffing() {
        let mut out = Vec::new();
        send_dot_stuffed(&mut out, b".a\r\nb\r\n..\r\n").expect("write");
        assert_eq!(out, b"..a\r\nb\r\n...\r\n.\r\n");
    }

    #[test]
    fn paths() {
        assert_eq!(path_of("carol"), "<carol>");
        assert_eq!(path_of("bob@example.com"), "<bob@example.com>");
        assert_eq!(path_of("a>b"), "<\"a>b\">");
        assert_eq!(path_of("q\"x"), "<\"q\\\"x\">");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(DeliverError::UnknownUser("x".into()).exit_code(), 67);
        assert_eq!(DeliverError::Temporary("x".into()).exit_code(), 75);
        let reply = |code, text: &str| Reply {
            code,
            lines: vec![text.to_string()],
        };
        assert_eq!(
            reply(550, "5.1.1 <x> User unknown")
                .into_error()
                .exit_code(),
            67
        );
        assert_eq!(reply(451, "4.3.0 failure").into_error().exit_code(), 75);
        assert_eq!(reply(552, "5.3.4 too big").into_error().exit_code(), 65);
        assert_eq!(reply(554, "5.0.0 no").into_error().exit_code(), 69);
        assert_eq!(
            reply(552, "5.2.2 <carol> Mailbox full")
                .into_error()
                .exit_code(),
            73
        );
    }

    /// A spool with user carol (password `pw`) and a delivery agent that finds no server (its
    /// LMTP address is a port nothing listens on), so it writes the Maildir itself.
    fn without_server() -> (tempfile::TempDir, LocalDelivery) {
        let dir = tempfile::tempdir().expect("tempdir");
        PasswdFile::new(dir.path().join("passwd"))
            .add_user("carol", "pw", crate::auth::Scheme::Plain)
            .expect("add");
        let mut local = LocalDelivery::new(dir.path());
        let unused = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        local.settings.lmtp_listen = unused;
        (dir, local)
    }

    #[test]
    fn direct_delivery_keeps_the_quota() {
        let (dir, mut local) = without_server();
        local.settings.quota_messages = 2;
        for _ in 0..2 {
            local
                .deliver("carol", "", b"Subject: x\n\nhi\n")
                .expect("deliver");
        }
        let refused = local.deliver("carol", "", b"Subject: x\n\nhi\n");
        assert!(
            matches!(&refused, Err(DeliverError::MailboxFull(_))),
            "{refused:?}"
        );
        assert_eq!(refused.map(|_| ()).unwrap_err().exit_code(), 73);
        let root = dir.path().join("mail/carol");
        let text = fs::read_to_string(root.join(quota::MAILDIRSIZE)).expect("maildirsize");
        let (_, usage) = quota::parse(text.as_bytes()).expect("parse");
        assert_eq!(usage.messages, 2);
        assert_eq!(
            usage,
            quota::recalculate(&root, QuotaLimits::from_settings(0, 2)).expect("recalculate")
        );
    }

    #[test]
    fn direct_delivery_without_a_server() {
        let (dir, local) = without_server();
        let route = local
            .deliver("carol", "s@example.org", b"Subject: x\n\nhi\n")
            .expect("deliver");
        let Route::Direct(path) = route else {
            panic!("{route:?}")
        };
        assert_eq!(
            fs::read(&path).expect("read"),
            b"Return-Path: <s@example.org>\r\nDelivered-To: <carol>\r\nSubject: x\r\n\r\nhi\r\n"
        );
        let store = Store::new(dir.path());
        let inbox = store
            .user("carol")
            .expect("user")
            .open("INBOX")
            .expect("inbox");
        assert_eq!(inbox.snapshot().messages.len(), 1);
        assert!(matches!(
            local.deliver("nobody", "", b"x\n"),
            Err(DeliverError::UnknownUser(_))
        ));
    }
}
