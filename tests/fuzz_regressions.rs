//! Replays, on stable, every input the `cargo fuzz` targets in `fuzz/` found (crashes and
//! timeouts, minimized, in `tests/fuzz-regressions/<target>/`) and their hand-written seeds
//! (`fuzz/seeds/<target>/`), through the very checks the fuzz targets run (`fuzz/checks/`).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../fuzz/checks/command.rs"]
mod command;
#[path = "../fuzz/checks/mailbox_name.rs"]
mod mailbox_name;
#[path = "../fuzz/checks/mime.rs"]
mod mime;

/// Longest a single input may take (unoptimised build); hangs that were found fail, not stall.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `check` on every file kept for `target`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [
        root.join("tests/fuzz-regressions").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .map(|e| e.expect("directory entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("readable input");
            let started = Instant::now();
            let (done, finished) = mpsc::channel();
            let worker = thread::spawn(move || {
                check(&data);
                let _ = done.send(());
            });
            match finished.recv_timeout(LIMIT) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} still running after {LIMIT:?}", path.display())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    eprintln!("{} failed", path.display());
                    if let Err(panic) = worker.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            eprintln!("{}: {:?}", path.display(), started.elapsed());
            count += 1;
        }
    }
    count
}

#[test]
fn command() {
    assert!(replay("command", command::check) > 0);
}

#[test]
fn mailbox_name() {
    assert!(replay("mailbox_name", mailbox_name::check) > 0);
}

#[test]
fn mime() {
    assert!(replay("mime", mime::check) > 0);
}
