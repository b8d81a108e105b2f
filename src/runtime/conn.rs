//! The connection driver: moves bytes between one socket and its session.
//!
//! Per read it waits for readiness (no buffer parked), receives into the worker's scratch
//! buffer, lets the session scan and answer in place, and sends the answer from the worker's
//! output buffer. Slow work the session asks for (password checks) runs off the thread.
//!
//! The future of an idle connection is kept small on purpose: it holds only what every await
//! point needs (the worker, the slab key, the descriptor). Rare, bulky states (a login in
//! progress, output waiting for a full socket) live in boxed futures of their own.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use tokio_uring::net::TcpStream;
use tracing::debug;

use super::socket_io;
use super::worker::Worker;
use crate::imap::session::{Credentials, Step, Work};

/// Serves one connection (whose session is `key`) until the client leaves or the session ends.
pub(crate) async fn serve(worker: Rc<Worker>, stream: TcpStream, key: usize) {
    let result = drive(&worker, key, stream.as_raw_fd()).await;
    // tokio-uring does not cancel in-flight operations when a socket is dropped; shutting the
    // socket down first makes sure nothing stays parked on it.
    let _ = stream.shutdown(Shutdown::Both);
    if let (Some(peer), Err(e)) = (worker.close_session(key), result) {
        debug!(worker = worker.id, %peer, "connection ended: {e}");
    }
}

async fn drive(worker: &Worker, key: usize, fd: RawFd) -> io::Result<()> {
    worker.with_session(key, |session, ctx, out| session.greeting(ctx, out));
    let mut open = true;
    // One send and one wait per turn, so the future has one slot for each.
    while open {
        socket_io::send_all(fd, &worker.out).await?;
        socket_io::readable(fd).await?;
        let step = {
            let mut scratch = worker.scratch.borrow_mut();
            let n = match socket_io::recv(fd, &mut scratch) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let input = &scratch[..n];
            worker.with_session(key, |session, ctx, out| session.on_input(input, ctx, out))
        };
        open = match step.unwrap_or(Step::Close) {
            Step::NeedInput => true,
            Step::Close => false,
            Step::Verify(credentials) => {
                Box::pin(slow(worker, key, fd, Slow::Verify(credentials))).await?
            }
            Step::Work(work) => Box::pin(slow(worker, key, fd, Slow::Work(work))).await?,
        };
    }
    socket_io::send_all(fd, &worker.out).await
}

/// Work a session asked for that must not run on the worker thread.
enum Slow {
    Verify(Credentials),
    Work(Work),
}

/// Sends what the session wrote so far, has the slow part done off the thread (a password
/// check, storage work), lets the session answer, and resumes the commands the client
/// pipelined behind it (which may need slow work again). The answers are left in the output
/// buffer for the caller to send. Returns whether the connection stays open.
async fn slow(worker: &Worker, key: usize, fd: RawFd, first: Slow) -> io::Result<bool> {
    let mut next = first;
    loop {
        socket_io::send_all(fd, &worker.out).await?;
        let step = match next {
            Slow::Verify(credentials) => {
                let verdict = worker.verify(credentials).await;
                worker.with_session(key, |session, ctx, out| {
                    session.finish_auth(verdict, ctx, out);
                    session.on_input(&[], ctx, out)
                })
            }
            Slow::Work(work) => {
                let Some(done) = worker.run_work(work, fd).await else {
                    return Ok(false);
                };
                worker.with_session(key, |session, ctx, out| {
                    session.finish_work(done, ctx, out);
                    session.on_input(&[], ctx, out)
                })
            }
        };
        next = match step.unwrap_or(Step::Close) {
            Step::NeedInput => return Ok(true),
            Step::Close => return Ok(false),
            Step::Verify(credentials) => Slow::Verify(credentials),
            Step::Work(work) => Slow::Work(work),
        };
    }
}
