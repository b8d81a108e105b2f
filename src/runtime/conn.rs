//! The connection driver: moves bytes between one socket and its session.
//!
//! Per read it waits for readiness (no buffer parked), receives into the worker's scratch
//! buffer, lets the session scan and answer in place, and sends the answer from the worker's
//! output buffer. Slow work the session asks for (password checks, storage work) runs on the
//! blocking pool. While it waits for its client, a session also answers the worker's signals:
//! IDLE pushes, keepalives, and the inactivity timeout.
//!
//! The future of an idle connection is kept small on purpose: it holds only what every await
//! point needs (the worker, the slab key, the descriptor). Rare, bulky states (a login or
//! storage work in progress, output waiting for a full socket) live in boxed futures.

use std::future::{Future, poll_fn};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use tokio_uring::net::TcpStream;
use tracing::debug;

use super::worker::{Received, Worker};
use super::{idle, socket_io};
use crate::imap::Limit;
use crate::imap::session::{Credentials, Session, Step, Work};

/// Serves one connection (whose session is `key`) until the client leaves or the session ends.
pub(crate) async fn serve(worker: Rc<Worker>, stream: TcpStream, key: usize) {
    let fd = stream.as_raw_fd();
    let result = drive(&worker, key, fd).await;
    worker.close_tls(key, fd);
    // tokio-uring does not cancel in-flight operations when a socket is dropped; shutting the
    // socket down first makes sure nothing stays parked on it.
    let _ = stream.shutdown(Shutdown::Both);
    let reason = match &result {
        Ok(reason) => *reason,
        Err(_) => Closed::Client,
    };
    worker.count_closed(reason.label());
    if let (Some(peer), Err(e)) = (worker.close_session(key), result) {
        debug!(worker = worker.id, %peer, "connection ended: {e}");
    }
}

/// Why a connection ended (a metric label).
#[derive(Clone, Copy)]
enum Closed {
    /// The client disconnected, or the socket failed.
    Client,
    /// The session ended (LOGOUT, or the protocol closed it).
    Logout,
    /// No client traffic for too long.
    Timeout,
    /// A newer session of the same user and address took its place (`MaxUserIpSessions.1`).
    Evicted,
    /// The server is shutting down.
    Shutdown,
    /// The administrator closed it (`hato kick`).
    Kicked,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::Logout => "logout",
            Closed::Timeout => "timeout",
            Closed::Evicted => "evicted",
            Closed::Shutdown => "shutdown",
            Closed::Kicked => "kicked",
        }
    }
}

/// What ended a wait for the client.
enum Wake {
    /// The socket has input (or an error or hang-up to read).
    Input,
    /// Signal bits from the worker (IDLE push, keepalive, timeout, eviction, shutdown).
    Signal(u8),
}

/// What the driver does after a session's answers are sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Wait for the client.
    Read,
    /// Go on with commands already received (the session yielded its turn).
    Resume,
    /// Close the connection.
    Close,
}

async fn drive(worker: &Worker, key: usize, fd: RawFd) -> io::Result<Closed> {
    worker.with_session(key, |session, ctx, out| session.greeting(ctx, out));
    let mut next = Next::Read;
    // One send and one wait per turn, so the future has one slot for each.
    loop {
        if let Some(delay) = worker.poll_delay(key) {
            // A client polling faster than NOOPRateLimit.1 waits for its answers. They leave
            // the worker's shared output buffer first: other sessions write there meanwhile.
            worker.count_limit(Limit::NoopRate);
            let held = worker.hold_output(key);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                match held {
                    Some(held) => socket_io::send_rest(fd, held).await,
                    None => Ok(()),
                }
            })
            .await?;
        }
        worker.send(key, fd).await?;
        worker.touch_output(key);
        let step = match next {
            Next::Close => return Ok(Closed::Logout),
            Next::Resume => {
                // Let the worker's other sessions run before this one goes on.
                tokio::task::yield_now().await;
                worker.with_session(key, |session, ctx, out| session.on_input(&[], ctx, out))
            }
            Next::Read => {
                worker.reconcile_idle(key);
                if let Some(step) = worker.resume_compressed(key)? {
                    Some(step)
                } else {
                    if let Some(closed) = wait_for_input(worker, key, fd).await? {
                        return Ok(closed);
                    }
                    match worker.receive(key, fd)? {
                        Received::Nothing => continue,
                        Received::Closed => return Ok(Closed::Client),
                        Received::Step(step) => Some(step),
                    }
                }
            }
        };
        next = match step.unwrap_or(Step::Close) {
            Step::NeedInput => Next::Read,
            Step::Yield => Next::Resume,
            Step::Close => Next::Close,
            // Boxed, like the other rare steps, so an idle session's future stays small.
            Step::StartTls => Box::pin(start_tls(worker, key, fd)).await?,
            Step::Compress => Box::pin(start_compress(worker, key, fd)).await?,
            Step::Verify(credentials) => {
                Box::pin(slow(worker, key, fd, Slow::Verify(credentials))).await?
            }
            Step::Work(work) => Box::pin(slow(worker, key, fd, Slow::Work(work))).await?,
        };
    }
}

/// Waits until the client sent something, answering the worker's signals meanwhile. Returns
/// why the session ended instead, if a signal ended it.
async fn wait_for_input(worker: &Worker, key: usize, fd: RawFd) -> io::Result<Option<Closed>> {
    // The readiness request stays in flight while signals are answered, so a long IDLE with
    // many pushes keeps exactly one request in the ring.
    let mut readable = pin!(socket_io::readable(fd));
    loop {
        let wake = poll_fn(|cx| {
            let bits = worker.take_signal_or_park(key, cx.waker());
            if bits != 0 {
                return Poll::Ready(Ok(Wake::Signal(bits)));
            }
            readable.as_mut().poll(cx).map(|r| r.map(|_| Wake::Input))
        })
        .await?;
        let Wake::Signal(bits) = wake else {
            return Ok(None);
        };
        if bits & idle::ENDING != 0 {
            let closed = worker
                .with_session(key, |session, _, out| end(session, bits, out))
                .unwrap_or(Closed::Client);
            if let Closed::Timeout = closed
                && worker.with_session(key, |s, _, _| s.user().is_none()) == Some(true)
            {
                worker.count_limit(Limit::PreauthTimeout);
            }
            worker.send(key, fd).await?;
            return Ok(Some(closed));
        }
        let changed_at = worker
            .with_session(key, |session, _, out| {
                let pushed = if bits & idle::PUSH != 0 {
                    session.idle_push(out)
                } else {
                    None
                };
                if bits & idle::KEEPALIVE != 0 {
                    session.keepalive(out);
                }
                pushed
            })
            .flatten();
        worker.send(key, fd).await?;
        worker.touch_output(key);
        if let Some(changed_at) = changed_at {
            worker.record_notify_latency(changed_at.elapsed());
        }
    }
}

/// Writes the `BYE` for a signal that ends the session; returns why it ended.
fn end(session: &mut Session, bits: u8, out: &mut Vec<u8>) -> Closed {
    if bits & idle::SHUTDOWN != 0 {
        session.close_with("Server shutting down", out);
        Closed::Shutdown
    } else if bits & idle::KICK != 0 {
        session.close_with("Disconnected by the administrator", out);
        Closed::Kicked
    } else if bits & idle::EVICT != 0 {
        session.close_with(
            "[LIMIT] Closed for a newer session of this user from this address",
            out,
        );
        Closed::Evicted
    } else {
        session.time_out(out);
        Closed::Timeout
    }
}

/// Sends the `OK` to STARTTLS in the clear, then switches the connection to TLS: the
/// handshake runs through the ordinary read and send turns.
async fn start_tls(worker: &Worker, key: usize, fd: RawFd) -> io::Result<Next> {
    worker.send(key, fd).await?;
    Ok(if worker.start_tls(key) {
        Next::Read
    } else {
        Next::Close
    })
}

/// Sends the `OK` to COMPRESS as it is, then compresses the connection both ways.
async fn start_compress(worker: &Worker, key: usize, fd: RawFd) -> io::Result<Next> {
    worker.send(key, fd).await?;
    worker.start_compress(key);
    Ok(Next::Read)
}

/// Work a session asked for that must not run on the worker thread.
enum Slow {
    Verify(Credentials),
    Work(Work),
}

/// Sends what the session wrote so far, has the slow part done off the thread (a password
/// check, storage work), lets the session answer, and resumes the commands the client
/// pipelined behind it (which may need slow work again). The answers are left in the output
/// buffer for the caller to send. Returns what the driver does next.
async fn slow(worker: &Worker, key: usize, fd: RawFd, first: Slow) -> io::Result<Next> {
    let mut next = first;
    loop {
        worker.send(key, fd).await?;
        let step = match next {
            Slow::Verify(credentials) => {
                let verdict = worker.verify(key, credentials).await;
                worker.with_session(key, |session, ctx, out| {
                    session.finish_auth(verdict, ctx, out);
                    session.on_input(&[], ctx, out)
                })
            }
            Slow::Work(work) => {
                let Some(done) = worker.run_work(key, work, fd).await else {
                    return Ok(Next::Close);
                };
                worker.with_session(key, |session, ctx, out| {
                    session.finish_work(done, ctx, out);
                    session.on_input(&[], ctx, out)
                })
            }
        };
        next = match step.unwrap_or(Step::Close) {
            Step::NeedInput => return Ok(Next::Read),
            Step::Yield => return Ok(Next::Resume),
            Step::Close => return Ok(Next::Close),
            Step::StartTls => return start_tls(worker, key, fd).await,
            Step::Compress => return start_compress(worker, key, fd).await,
            Step::Verify(credentials) => Slow::Verify(credentials),
            Step::Work(work) => Slow::Work(work),
        };
    }
}
