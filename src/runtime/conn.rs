//! The connection driver: moves bytes between one socket and its session.
//!
//! Per read it waits for readiness (no buffer parked), receives into the worker's scratch
//! buffer, lets the session scan and answer in place, and sends the answer from the worker's
//! output buffer. Slow work the session asks for (password checks) runs off the thread.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio_uring::net::TcpStream;
use tracing::debug;

use super::socket_io;
use super::worker::Worker;
use crate::imap::session::Step;

/// Serves one connection until the client leaves or the session ends.
pub(crate) async fn serve(worker: Rc<Worker>, stream: TcpStream, peer: SocketAddr) {
    let key = worker.open_session();
    let result = drive(&worker, key, &stream).await;
    if let Err(e) = result {
        debug!(worker = worker.id, %peer, "connection ended: {e}");
    }
    // tokio-uring does not cancel in-flight operations when a socket is dropped; shutting the
    // socket down first makes sure nothing stays parked on it.
    let _ = stream.shutdown(Shutdown::Both);
    worker.close_session(key);
}

async fn drive(worker: &Worker, key: usize, stream: &TcpStream) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    worker.with_session(key, |session, ctx, out| session.greeting(ctx, out));
    socket_io::send_all(fd, &worker.out).await?;
    loop {
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
        let mut step = step.unwrap_or(Step::Close);
        socket_io::send_all(fd, &worker.out).await?;
        loop {
            match step {
                Step::NeedInput => break,
                Step::Close => return Ok(()),
                Step::Verify(credentials) => {
                    // Boxed: the check's state (timer, blocking-pool handle) would otherwise
                    // be part of every session's future, idle or not.
                    let verdict = Box::pin(worker.verify(credentials)).await;
                    step = worker
                        .with_session(key, |session, ctx, out| {
                            session.finish_auth(verdict, ctx, out);
                            // Resume commands the client pipelined behind the login.
                            session.on_input(&[], ctx, out)
                        })
                        .unwrap_or(Step::Close);
                    socket_io::send_all(fd, &worker.out).await?;
                }
            }
        }
    }
}
