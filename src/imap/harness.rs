//! An in-memory driver for a [`Session`]: input goes in as bytes, answers come out in a
//! buffer, and storage work runs on the calling thread. What the benchmarks and the allocation
//! tests use instead of a socket and a worker.

use std::path::Path;
use std::sync::Arc;

use super::NoObserver;
use super::session::{AuthVerdict, Context, Session, Step};
use crate::config::Settings;
use crate::store::Store;

/// A session with everything it needs around it.
pub struct Harness {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub session: Session,
    /// The answers so far; callers clear it as they please.
    pub out: Vec<u8>,
    observer: NoObserver,
}

impl Harness {
    /// A fresh session (not logged in, default settings) on the store at `spool`, which is
    /// only touched when a command needs storage.
    pub fn new(spool: &Path) -> Harness {
        Harness {
            settings: Settings::default(),
            store: Arc::new(Store::new(spool)),
            session: Session::new(),
            out: Vec::with_capacity(4096),
            observer: NoObserver,
        }
    }

    /// A session logged in as `user` (no password is checked).
    pub fn logged_in(spool: &Path, user: &str) -> Harness {
        let mut harness = Harness::new(spool);
        harness.on_input(b"a LOGIN user pw\r\n");
        harness.with(|session, ctx, out| {
            session.finish_auth(AuthVerdict::Accepted(user.into()), ctx, out);
        });
        harness.out.clear();
        harness
    }

    /// Feeds `input` as the worker would, running storage work inline; answers are appended
    /// to [`Harness::out`].
    pub fn feed(&mut self, input: &[u8]) -> Step {
        self.with(|session, ctx, out| session.on_input_inline(input, ctx, out))
    }

    /// Feeds `input` without running storage work (a `Work` step is returned as it is).
    pub fn on_input(&mut self, input: &[u8]) -> Step {
        self.with(|session, ctx, out| session.on_input(input, ctx, out))
    }

    /// Runs `f` on the session with its context and output buffer.
    pub fn with<R>(
        &mut self,
        f: impl FnOnce(&mut Session, &mut Context<'_>, &mut Vec<u8>) -> R,
    ) -> R {
        let Harness {
            settings,
            store,
            session,
            out,
            observer,
        } = self;
        let mut ctx = Context {
            settings,
            observer,
            store,
            tls_available: false,
        };
        f(session, &mut ctx, out)
    }
}
