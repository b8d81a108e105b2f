//! Socket I/O for the connection driver: readiness through io_uring `POLL_ADD`, then a plain
//! non-blocking `recv`/`send` into buffers the worker owns.
//!
//! Waiting for readiness instead of parking a read means an idle session has no buffer in the
//! kernel or in user space (measured in `shared/research/io-uring.md`: ~0.7 KB per idle
//! connection instead of ~4.8 KB with a parked 4 KiB read). tokio-uring has no poll operation
//! of its own; its public `UnsubmittedOneshot` lets us submit the raw SQE.

use std::io;
use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, types};
use tokio_uring::{InFlightOneshot, OneshotOutputTransform, UnsubmittedOneshot};

/// Turns a POLL_ADD completion into the returned event mask.
struct PollTransform;

impl OneshotOutputTransform for PollTransform {
    type Output = io::Result<u32>;
    type StoredData = ();

    fn transform_oneshot_output(self, _: (), cqe: cqueue::Entry) -> io::Result<u32> {
        let res = cqe.result();
        if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            // Non-negative: a poll event mask.
            Ok(res as u32)
        }
    }
}

/// Submits a one-shot `POLL_ADD` for `events` on `fd`; resolves to the ready event mask.
/// A plain function, not an `async fn`, so the future is just the in-flight operation.
fn poll(fd: RawFd, events: libc::c_short) -> InFlightOneshot<(), PollTransform> {
    // The kernel takes its own reference to the file for the request, so the request stays
    // valid even if the fd were closed first; we close only after shutdown() completes it.
    let sqe = opcode::PollAdd::new(types::Fd(fd), events as u32).build();
    UnsubmittedOneshot::new((), PollTransform, sqe).submit()
}

/// Waits until `fd` has input (or an error/hang-up to report through the next `recv`).
pub(crate) fn readable(fd: RawFd) -> impl Future<Output = io::Result<u32>> {
    poll(fd, libc::POLLIN | libc::POLLRDHUP)
}

/// Waits until `fd` can take more output.
pub(crate) fn writable(fd: RawFd) -> impl Future<Output = io::Result<u32>> {
    poll(fd, libc::POLLOUT)
}

/// Non-blocking receive into `buf`. `Ok(0)` is end of stream; `WouldBlock` means try later.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the duration of
        // the call, and recv(2) writes at most that many bytes into it. `fd` is a socket the
        // caller keeps open for the duration of the call.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            // Non-negative and at most buf.len().
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Non-blocking send of as much of `buf` as the socket takes now.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for the duration of
        // the call; send(2) only reads it. MSG_NOSIGNAL turns a closed peer into EPIPE instead
        // of SIGPIPE. `fd` is a socket the caller keeps open for the duration of the call.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast::<libc::c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends all of `out` (the worker's shared output buffer), clearing it. The common case
/// completes at once without allocating; if the socket is full, the unsent rest moves into a
/// buffer of this connection's own before waiting, so the shared buffer is free for others.
pub(crate) async fn send_all(fd: RawFd, out: &std::cell::RefCell<Vec<u8>>) -> io::Result<()> {
    match send_now(fd, out)? {
        None => Ok(()),
        // Boxed so that this rare waiting state is not part of every session's future.
        Some(rest) => Box::pin(send_rest(fd, rest)).await,
    }
}

/// Sends what the socket takes now; returns the unsent rest, if any.
fn send_now(fd: RawFd, out: &std::cell::RefCell<Vec<u8>>) -> io::Result<Option<Vec<u8>>> {
    let mut shared = out.borrow_mut();
    let mut sent = 0;
    while sent < shared.len() {
        match send(fd, &shared[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                shared.clear();
                return Err(e);
            }
        }
    }
    let rest = (sent < shared.len()).then(|| shared[sent..].to_vec());
    shared.clear();
    Ok(rest)
}

/// Sends `rest`, waiting for room as needed.
pub(crate) async fn send_rest(fd: RawFd, rest: Vec<u8>) -> io::Result<()> {
    let mut sent = 0;
    while sent < rest.len() {
        writable(fd).await?;
        match send(fd, &rest[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long a blocking writer waits for a client that reads nothing before giving up.
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(300);

/// Blocking writes to a session's socket, for storage work that streams a large answer from a
/// blocking thread while the session's own task waits for that work to finish.
pub(crate) struct BlockingSink {
    fd: RawFd,
}

impl BlockingSink {
    pub(crate) fn new(fd: RawFd) -> BlockingSink {
        BlockingSink { fd }
    }

    /// Waits until the socket takes more output, or fails after [`STALLED_CLIENT`].
    fn wait_writable(&self) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let timeout = libc::c_int::try_from(STALLED_CLIENT.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `pfd` is one valid, exclusively borrowed pollfd and we pass a count of 1.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout) };
            match n {
                1.. => return Ok(()),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading",
                    ));
                }
                _ => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
        }
    }
}

impl io::Write for BlockingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match send(self.fd, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable()?,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
