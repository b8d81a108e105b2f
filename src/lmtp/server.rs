//! The LMTP listener: one thread accepting, one thread per connection, at most
//! [`MAX_CONNECTIONS`] at a time.

use std::io::{self, BufWriter, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use tracing::{debug, warn};

use super::session::{self, Context};
use super::wire::Wire;

/// Connections served at once; one more gets `421` and is closed. An MTA opens a handful
/// (Postfix's default destination concurrency is 20).
pub const MAX_CONNECTIONS: usize = 64;
/// Longest wait for the client (a command, a piece of DATA) or for it to take our replies.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Stack of a connection thread: the session keeps its buffers on the heap.
const STACK_SIZE: usize = 256 * 1024;

/// Accepts connections forever (the thread ends with the process).
pub(crate) fn accept_loop(listener: TcpListener, ctx: Arc<Context>) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: do not spin.
                warn!(error = %e, "lmtp: accept failed");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            warn!(%peer, "lmtp: too many connections; refused");
            refuse(stream, &ctx.hostname);
            continue;
        }
        let slot = Slot(active.clone());
        let ctx = ctx.clone();
        let spawned = thread::Builder::new()
            .name("hato-lmtp-conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                debug!(%peer, "lmtp: connection");
                serve_connection(stream, &ctx);
            });
        if let Err(e) = spawned {
            // The closure (slot and stream) was dropped: the slot is free, the socket closed.
            warn!(error = %e, "lmtp: cannot start a connection thread");
        }
    }
}

/// Frees a connection slot when the connection's thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn refuse(mut stream: TcpStream, host: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write!(
        stream,
        "421 4.3.2 {host} Too many connections, try again later\r\n"
    );
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_connection(stream: TcpStream, ctx: &Context) {
    let setup = (|| {
        stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
        stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        stream.try_clone()
    })();
    let writer = match setup {
        Ok(writer) => writer,
        Err(e) => {
            warn!(error = %e, "lmtp: cannot set up a connection");
            return;
        }
    };
    let mut wire = Wire::new(&stream, BufWriter::new(writer));
    match session::run(ctx, &mut wire) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            debug!("lmtp: idle timeout");
            let _ = wire.reply(&format!(
                "421 4.4.2 {} Idle timeout, closing connection",
                ctx.hostname
            ));
            let _ = wire.flush();
        }
        Err(e) => debug!(error = %e, "lmtp: connection ended"),
    }
    let _ = stream.shutdown(Shutdown::Both);
}
