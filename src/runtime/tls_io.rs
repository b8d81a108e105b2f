//! TLS on a session's socket, driven by readiness like a plain session: ciphertext received
//! into the worker's scratch buffer is fed to the session's rustls connection, and the
//! plaintext lands in the worker's second buffer for the session to scan in place; the
//! session's answers are encrypted into the connection's own buffer and written as the socket
//! takes them. Nothing here blocks, and an idle TLS session keeps no buffer of ours.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;

use rustls::ServerConnection;

use super::socket_io;

/// What came of received ciphertext.
pub(crate) enum Decrypted {
    /// This many bytes of plaintext are in the buffer (0: handshake progress only).
    Plain(usize),
    /// The client closed the TLS session (close_notify) and sent nothing more.
    Closed,
    /// The TLS session failed (why); an alert may be queued for the client.
    Failed(String),
}

/// Feeds `cipher` to `conn` and moves the plaintext it yields into `plain`.
///
/// Plaintext is never longer than the ciphertext it came in, but a read can complete a record
/// begun in the read before: `plain` must hold the receive buffer plus one record (16 KiB of
/// plaintext), so that nothing decrypted is left inside rustls with no read to come for it.
pub(crate) fn decrypt(
    conn: &mut ServerConnection,
    mut cipher: &[u8],
    plain: &mut [u8],
) -> Decrypted {
    let mut filled = 0;
    let mut closed = false;
    while !cipher.is_empty() {
        match conn.read_tls(&mut cipher) {
            Ok(n) if n > 0 => {}
            // rustls takes nothing more: its buffer is full of a message it cannot use (an
            // oversized handshake message, a bad length). Never loop on it.
            Ok(_) => return Decrypted::Failed("TLS record refused".into()),
            Err(e) => return Decrypted::Failed(e.to_string()),
        }
        if let Err(e) = conn.process_new_packets() {
            return Decrypted::Failed(e.to_string());
        }
        loop {
            match conn.reader().read(&mut plain[filled..]) {
                Ok(0) if filled < plain.len() => {
                    closed = true;
                    break;
                }
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
    }
    if closed && filled == 0 {
        Decrypted::Closed
    } else {
        Decrypted::Plain(filled)
    }
}

/// Encrypts the session's answers (taking them out of `out`).
pub(crate) fn seal(conn: &mut ServerConnection, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        conn.writer().write_all(out)?;
        out.clear();
    }
    Ok(())
}

/// Writes queued TLS records to the socket; `Ok(true)` when all went, `Ok(false)` when the
/// socket is full (wait for POLLOUT and call again).
pub(crate) fn flush(conn: &mut ServerConnection, fd: RawFd) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Socket(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The session's socket as a non-blocking writer for rustls.
struct Socket(RawFd);

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket_io::send(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
