//! Graceful shutdown on `SIGTERM` (systemd's stop) and `SIGINT` (Ctrl-C).
//!
//! The signals are blocked before any thread starts and read from a signalfd by one thread,
//! so no worker is ever interrupted. On the first signal every worker stops accepting, each
//! session gets `* BYE Server shutting down` once the command it is running has answered
//! (output already queued is sent first), and the process exits when the sessions are gone or
//! `ShutdownGrace.1` has passed. A second signal exits at once; so does a shutdown that is still
//! not done a few seconds after the grace time (a blocking job stuck on a dead disk).

use std::fs::File;
use std::io::{self, Read};
use std::thread;
use std::time::Duration;

use tracing::{error, info};

use super::idle::{Notice, Senders};
use crate::config::SharedSettings;
use crate::sys;

/// Signals closer together than this count as one.
const DOUBLE_SIGNAL: Duration = Duration::from_millis(500);

/// Beyond the grace time, how long the workers get to stop before the process exits anyway.
const EXIT_BACKSTOP: Duration = Duration::from_secs(5);

/// `SIGTERM` and `SIGINT`, blocked and waiting to be read.
pub struct Termination {
    signals: File,
}

impl Termination {
    /// Blocks `SIGTERM` and `SIGINT` in the calling thread. Call before any thread starts, so
    /// that every thread inherits the mask and none can be killed by the signal.
    pub fn block() -> io::Result<Termination> {
        Ok(Termination {
            signals: File::from(sys::block_signals(&[libc::SIGTERM, libc::SIGINT], 0)?),
        })
    }

    /// Starts the thread that turns the first signal into a shutdown of every worker.
    pub(crate) fn watch(self, workers: Senders, settings: SharedSettings) -> io::Result<()> {
        thread::Builder::new()
            .name("hato-shutdown".into())
            .spawn(move || {
                let name = self.wait();
                info!("{name}: shutting down (a second signal exits at once)");
                workers.broadcast(Notice::Shutdown);
                let backstop = settings.load().shutdown_grace + EXIT_BACKSTOP;
                thread::spawn(move || {
                    thread::sleep(backstop);
                    error!("shutdown still not finished after {backstop:?}; exiting");
                    std::process::exit(1);
                });
                // The same signal sent twice at once (to the process and to its group, as
                // `timeout` does) is one request; a second one later is the impatient operator.
                let first = std::time::Instant::now();
                loop {
                    let name = self.wait();
                    if first.elapsed() >= DOUBLE_SIGNAL {
                        info!("{name} again: exiting now");
                        std::process::exit(1);
                    }
                }
            })
            .map(drop)
    }

    /// Blocks until a signal arrives; returns its name.
    fn wait(&self) -> &'static str {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        loop {
            // A signalfd yields whole siginfo records.
            match (&self.signals).read_exact(&mut info) {
                Ok(()) => {
                    // ssi_signo is the first field (u32, native endian).
                    let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                    return if signo == libc::SIGINT as u32 {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                }
                Err(e) => {
                    // Cannot happen for a valid signalfd; do not spin if it does.
                    error!("reading the shutdown signalfd: {e}");
                    thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
