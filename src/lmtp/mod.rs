//! Mail delivery into the store: the LMTP server (RFC 2033) that Postfix or Exim deliver to,
//! and the local delivery behind `hato deliver`.
//!
//! * [`spawn`]: binds the listener (`LmtpListen.1`) and serves it on its own threads.
//! * [`deliver`]: stores one message in a user's INBOX (durably: the store fsyncs the file,
//!   the directory and the UID list before this returns); what the LMTP server calls for each
//!   recipient.
//! * [`LocalDelivery`]: `hato deliver`: hands a message to the running server over LMTP, or,
//!   when none answers for this spool, drops it into the user's Maildir `new/` directly.
//!
//! Inside: `command` parses command lines, `wire` frames lines and the DATA stream
//! (dot-stuffing, CRLF, size and line bounds, reply batching for PIPELINING), `session` is
//! the state machine and the per-recipient delivery, `server` accepts and bounds
//! connections, `recipients` knows which users exist, `local` is `hato deliver`.
//!
//! # Why threads, not the io_uring workers
//!
//! IMAP is hundreds of thousands of mostly idle sessions, so it gets thread-per-core workers
//! where a session costs a kilobyte. LMTP is the opposite: a few long-lived connections from
//! the site's MTAs (Postfix opens at most `default_destination_concurrency_limit`, 20 by
//! default), each busy writing messages and waiting for fsyncs. Blocking `std::net` I/O with
//! one small thread per connection (256 KiB stack) is the simplest correct design for that: a
//! slow fsync blocks only its own connection, never an IMAP worker, and nothing here needs
//! the async runtime. The number of connections is bounded ([`MAX_CONNECTIONS`]; one more
//! gets `421 4.3.2` and is closed) and every read and write has a timeout
//! ([`IDLE_TIMEOUT`]; then `421 4.4.2`), so a stuck or hostile peer cannot pile up threads.
//!
//! # Protocol
//!
//! `LHLO` (answered with `PIPELINING`, `ENHANCEDSTATUSCODES`, `8BITMIME`, `SIZE
//! <MaxLiteralSize>` and `X-HATO-SPOOL <token>`, see [`spool_token`]), `MAIL FROM:<..>
//! [SIZE=n] [BODY=..]`, `RCPT TO:<user>` or `<user@domain>`, `DATA`, `RSET`, `NOOP`, `QUIT`,
//! `VRFY` (`252`). A recipient is a passwd-file user: the whole address if a user has that
//! name, else the local part, else the local part without a `+detail`, each compared exactly
//! first, then ignoring ASCII case; others get `550 5.1.1`. After DATA, one reply per accepted
//! recipient, in order: `250 2.0.0` once that copy is durably stored, `451 4.3.0` (or `452
//! 4.3.1` when the disk is full) when it could not be, `552 5.2.2` when it would take that
//! user over quota (see [`crate::store::quota`]; the other recipients are not affected). Each copy starts with `Return-Path:
//! <sender>` and `Delivered-To: <recipient address>`, as MDAs write them. Messages larger than
//! `MaxLiteralSize.1` get `552 5.3.4` (at MAIL when SIZE says so, else after DATA). Bad lines
//! get `500`/`501`/`555`, unknown commands `502`, and the session goes on (up to 50 of them).
//! Command lines are limited to 64 KiB; DATA lines may be longer (only the message size is
//! limited); bare-LF line ends are stored as CRLF.
//!
//! # Metrics
//!
//! `hato_deliveries_total{via, result}`: `via="lmtp"` for messages from an MTA,
//! `via="deliver"` for messages from `hato deliver` (through the server, recognised by its
//! `LHLO hato-deliver`, or stored directly, then counted in the short-lived command's own
//! process, which nothing scrapes); `result` is `ok` or `failed` (a storage error). Counted per
//! recipient copy.

mod command;
mod local;
mod recipients;
mod server;
mod session;
mod wire;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::thread;

use thiserror::Error;

use crate::auth::{AuthError, UserDirectory};
use crate::config::SharedSettings;
use crate::store::{Store, StoreError};

pub use local::{DeliverError, LocalDelivery, Route};
pub use server::{IDLE_TIMEOUT, MAX_CONNECTIONS};

/// The counter of delivered copies.
pub const DELIVERIES: &str = "hato_deliveries_total";

/// The LHLO name `hato deliver` uses, so the server counts its messages as `via="deliver"`.
pub const DELIVER_CLIENT_NAME: &str = "hato-deliver";

/// Why delivery or the listener failed.
#[derive(Debug, Error)]
pub enum LmtpError {
    #[error("cannot listen for LMTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the LMTP listener thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot read the users: {0}")]
    Users(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` and serves LMTP on it from a thread of its own; returns the bound address
/// (useful with port 0). Recipients are checked against `users`' passwd-file; the message
/// size limit is `MaxLiteralSize` from `settings`, read at each transaction. `spool` is only
/// used for the `X-HATO-SPOOL` token that lets `hato deliver` tell this server from another.
pub fn spawn(
    addr: SocketAddr,
    spool: &Path,
    store: Arc<Store>,
    users: Arc<UserDirectory>,
    settings: SharedSettings,
) -> Result<SocketAddr, LmtpError> {
    let listener = TcpListener::bind(addr).map_err(|source| LmtpError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| LmtpError::Bind { addr, source })?;
    let ctx = Arc::new(session::Context {
        store,
        recipients: recipients::Recipients::new(users.file().clone()),
        settings,
        hostname: hostname(),
        spool_token: spool_token(spool),
    });
    thread::Builder::new()
        .name("hato-lmtp".into())
        .spawn(move || server::accept_loop(listener, ctx))
        .map_err(LmtpError::Spawn)?;
    Ok(bound)
}

/// Stores `message` as it is in `user`'s INBOX (creating the user's Maildir on first use) and
/// returns its UID, once the file, its directory entry and the UID are on disk. Does not check
/// that `user` is in the passwd-file; callers do.
pub fn deliver(store: &Store, user: &str, message: &[u8]) -> Result<u32, LmtpError> {
    Ok(store
        .user(user)?
        .open("INBOX")?
        .append(message, 0, &[], None)?)
}

/// Where a delivery came from, the `via` label of [`DELIVERIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Lmtp,
    Deliver,
}

impl Via {
    pub fn label(self) -> &'static str {
        match self {
            Via::Lmtp => "lmtp",
            Via::Deliver => "deliver",
        }
    }
}

pub(crate) fn count_delivery(via: Via, ok: bool) {
    static DESCRIBE: Once = Once::new();
    DESCRIBE.call_once(|| {
        metrics::describe_counter!(
            DELIVERIES,
            "Message copies delivered into INBOXes, by path (lmtp, deliver) and result."
        );
    });
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(DELIVERIES, "via" => via.label(), "result" => result).increment(1);
}

/// The trace headers an MDA puts on top of each copy: `Return-Path: <sender>` (`<>` for the
/// null sender) and `Delivered-To: <recipient>`.
pub(crate) fn trace_headers(out: &mut Vec<u8>, sender: &str, recipient: &str) {
    out.extend_from_slice(b"Return-Path: <");
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(b">\r\nDelivered-To: <");
    out.extend_from_slice(recipient.as_bytes());
    out.extend_from_slice(b">\r\n");
}

/// Identifies a spool: 16 hex digits of a hash (FNV-1a, stable across builds) of its
/// canonical path. The server advertises it in its LHLO answer (`X-HATO-SPOOL`); `hato
/// deliver` hands a message to a server only when the tokens match, so a server of another
/// spool that happens to listen on the configured port (a test, a second instance) never gets
/// mail meant for this one.
pub fn spool_token(spool: &Path) -> String {
    let canonical = spool.canonicalize().unwrap_or_else(|_| spool.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// This host's name, for the greeting and the LHLO answer.
pub(crate) fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_token_is_stable_and_canonical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = spool_token(dir.path());
        assert_eq!(a.len(), 16);
        assert_eq!(a, spool_token(&dir.path().join(".")));
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(a, spool_token(other.path()));
    }

    #[test]
    fn trace_headers_format() {
        let mut out = Vec::new();
        trace_headers(&mut out, "", "carol@example.com");
        assert_eq!(
            out,
            b"Return-Path: <>\r\nDelivered-To: <carol@example.com>\r\n"
        );
    }

    #[test]
    fn deliver_stores_in_inbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let uid = deliver(&store, "carol", b"Subject: x\r\n\r\nhi\r\n").expect("deliver");
        let inbox = store
            .user("carol")
            .expect("user")
            .open("INBOX")
            .expect("inbox");
        assert_eq!(inbox.read(uid).expect("read"), b"Subject: x\r\n\r\nhi\r\n");
        assert!(deliver(&store, "../x", b"x").is_err());
    }
}
