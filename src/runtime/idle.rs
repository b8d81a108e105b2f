//! What reaches a session while it waits for its client: pushes of mailbox changes during
//! IDLE, keepalives, and the inactivity timeout.
//!
//! * **Watch table.** Each worker keeps, per mailbox its IDLE sessions watch, the slab keys of
//!   those sessions, and sets its bit on the mailbox ([`Mailbox::watch`]). The store's change
//!   hook sends the mailbox's id to every watching worker's channel; nothing is shared between
//!   workers but those channels.
//! * **Folder watch.** The first IDLE session on a mailbox in a worker also asks the
//!   process-wide [`FolderWatcher`] to watch the folder's `new/` and `cur/` with inotify (the last
//!   one to leave asks it to stop), so that writers outside hato (another MDA, a script) are
//!   synced, and so pushed, within about 50 ms rather than at the next IDLELoop re-read.
//! * **Signals.** A waiting session's task parks its waker in its slab slot; a push, keepalive or
//!   timeout sets a bit in the slot and wakes it, and the session's own task writes the answer,
//!   so nothing else ever writes to its socket.
//! * **Housekeeping.** Once a second each worker sweeps its slab for sessions due a keepalive or
//!   a timeout, and every `IDLELoop.1` seconds it re-reads the mailboxes its IDLE sessions watch
//!   (on the blocking pool), which catches writers outside hato that inotify missed (NFS, no
//!   inotify, the watch limit) and, with `Broadcast.1`=0, is the only way IDLE sessions learn of
//!   changes. Its cost is per watched mailbox, not per
//!   session.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::folder_watch::FolderWatcher;
use super::worker::Worker;
use crate::store::{Mailbox, Store};

/// Signal bits in a slot.
pub(crate) const PUSH: u8 = 1;
pub(crate) const KEEPALIVE: u8 = 2;
pub(crate) const TIMEOUT: u8 = 4;
/// Closed for a newer session of the same user and address (`MaxUserIpSessions.1`).
pub(crate) const EVICT: u8 = 8;
/// The server is shutting down.
pub(crate) const SHUTDOWN: u8 = 16;
/// The administrator closed the session (`hato kick`).
pub(crate) const KICK: u8 = 32;
/// Signals that end the session.
pub(crate) const ENDING: u8 = TIMEOUT | EVICT | SHUTDOWN | KICK;

/// What other threads tell a worker.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// Mailbox `id` changed.
    Changed(usize),
    /// Close the session at this slab key if it is still the one with this serial.
    Evict { key: usize, serial: u64 },
    /// Stop accepting and close every session (SIGTERM/SIGINT).
    Shutdown,
    /// List the sessions (`hato who`).
    Who(std::sync::mpsc::Sender<Vec<super::admin::SessionInfo>>),
    /// Close the sessions of `user` (from `ip`, if given) and say how many (`hato kick`).
    Kick {
        user: Box<str>,
        ip: Option<std::net::IpAddr>,
        reply: std::sync::mpsc::Sender<usize>,
    },
}

/// The mailboxes a worker's IDLE sessions wait on.
#[derive(Default)]
pub(crate) struct WatchTable {
    by_mailbox: HashMap<usize, (Arc<Mailbox>, Vec<usize>)>,
    /// Told when a mailbox gains its first session here and loses its last one.
    folders: Option<Arc<FolderWatcher>>,
}

impl WatchTable {
    /// A table whose mailboxes are also watched through `folders` (when there is one).
    pub(crate) fn new(folders: Option<Arc<FolderWatcher>>) -> WatchTable {
        WatchTable {
            by_mailbox: HashMap::new(),
            folders,
        }
    }

    /// Session `key` now waits on `mailbox`.
    pub(crate) fn add(&mut self, worker: usize, mailbox: &Arc<Mailbox>, key: usize) {
        let entry = self
            .by_mailbox
            .entry(mailbox.id())
            .or_insert_with(|| (mailbox.clone(), Vec::new()));
        if entry.1.is_empty() {
            mailbox.watch(worker);
            if let Some(folders) = &self.folders {
                folders.watch(mailbox);
            }
        }
        entry.1.push(key);
    }

    /// Session `key` no longer waits on mailbox `id`.
    pub(crate) fn remove(&mut self, worker: usize, id: usize, key: usize) {
        if let Some((mailbox, keys)) = self.by_mailbox.get_mut(&id) {
            keys.retain(|&k| k != key);
            if keys.is_empty() {
                mailbox.unwatch(worker);
                self.by_mailbox.remove(&id);
                if let Some(folders) = &self.folders {
                    folders.unwatch(id);
                }
            }
        }
    }

    /// The sessions waiting on mailbox `id`.
    pub(crate) fn sessions(&self, id: usize) -> Vec<usize> {
        self.by_mailbox
            .get(&id)
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default()
    }

    pub(crate) fn mailboxes(&self) -> Vec<Arc<Mailbox>> {
        self.by_mailbox.values().map(|(m, _)| m.clone()).collect()
    }

    /// Sessions currently in IDLE on a mailbox.
    pub(crate) fn session_count(&self) -> usize {
        self.by_mailbox.values().map(|(_, keys)| keys.len()).sum()
    }
}

/// One channel per worker; the store's change hook sends to them. Also holds the process-wide
/// [`FolderWatcher`], started here.
pub struct Notices {
    senders: Vec<mpsc::UnboundedSender<Notice>>,
    receivers: Vec<Option<mpsc::UnboundedReceiver<Notice>>>,
    folders: Option<Arc<FolderWatcher>>,
}

/// What a worker gets from [`Notices::take`].
pub struct WorkerNotices {
    /// The worker's notices.
    pub(crate) receiver: mpsc::UnboundedReceiver<Notice>,
    /// The process-wide folder watcher (none if inotify is unavailable).
    pub(crate) folders: Option<Arc<FolderWatcher>>,
}

impl Notices {
    /// Channels for `workers` workers; starts the folder watcher (once per process: `serve`
    /// calls this once).
    pub fn new(workers: usize) -> Notices {
        let (senders, receivers) = (0..workers)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Some(rx))
            })
            .unzip();
        Notices {
            senders,
            receivers,
            folders: FolderWatcher::start(),
        }
    }

    /// Routes the store's change notices to the watching workers.
    pub fn install(&self, store: &Store) {
        let senders = self.senders.clone();
        store.on_change(move |mailbox, watchers| {
            for (i, sender) in senders.iter().enumerate() {
                if watchers & (1 << (i % 64)) != 0 {
                    // A closed channel means the worker is gone; nothing to tell.
                    let _ = sender.send(Notice::Changed(mailbox));
                }
            }
        });
    }

    /// The sending ends, one per worker (index = worker id).
    pub(crate) fn senders(&self) -> Senders {
        Senders(self.senders.clone())
    }

    /// Worker `id`'s receiving end and the folder watcher (once).
    pub fn take(&mut self, id: usize) -> Option<WorkerNotices> {
        let receiver = self.receivers.get_mut(id).and_then(Option::take)?;
        Some(WorkerNotices {
            receiver,
            folders: self.folders.clone(),
        })
    }
}

/// A way to reach every worker.
#[derive(Clone)]
pub(crate) struct Senders(Vec<mpsc::UnboundedSender<Notice>>);

impl Senders {
    /// Tells worker `id` (a gone worker has nothing to be told).
    pub(crate) fn send(&self, id: usize, notice: Notice) {
        if let Some(sender) = self.0.get(id) {
            let _ = sender.send(notice);
        }
    }

    /// Tells every worker.
    pub(crate) fn broadcast(&self, notice: Notice) {
        for sender in &self.0 {
            let _ = sender.send(notice.clone());
        }
    }

    /// How many workers there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Acts on the notices sent to this worker: relays mailbox changes to its IDLE sessions (with
/// `Broadcast.1`=1), closes evicted sessions, starts the shutdown.
pub(crate) async fn relay(worker: Rc<Worker>, mut notices: mpsc::UnboundedReceiver<Notice>) {
    while let Some(notice) = notices.recv().await {
        match notice {
            Notice::Changed(mailbox) => {
                if !worker.settings().broadcast {
                    continue;
                }
                worker.count_broadcast();
                for key in worker.watch_table().sessions(mailbox) {
                    worker.signal(key, PUSH);
                }
            }
            Notice::Evict { key, serial } => worker.evict(key, serial),
            Notice::Shutdown => worker.shut_down(),
            Notice::Who(reply) => {
                // The asker may have given up waiting; nothing to do then.
                let _ = reply.send(worker.sessions_info());
            }
            Notice::Kick { user, ip, reply } => {
                let _ = reply.send(worker.kick(&user, ip));
            }
        }
    }
}

/// The once-a-second sweep: keepalives, timeouts, and the IDLELoop re-read of watched
/// mailboxes.
pub(crate) async fn housekeeping(worker: Rc<Worker>) {
    let mut since_check = Duration::ZERO;
    let tick = Duration::from_secs(1);
    loop {
        tokio::time::sleep(tick).await;
        let settings = worker.settings();
        worker.sweep(&settings);
        since_check += tick;
        if since_check >= settings.idle_loop {
            since_check = Duration::ZERO;
            check_watched(&worker, settings.broadcast).await;
        }
    }
}

/// Re-reads every watched mailbox off the thread (two stats each when nothing changed), then,
/// without Broadcast, tells its IDLE sessions to catch up.
async fn check_watched(worker: &Rc<Worker>, broadcast: bool) {
    let mailboxes = worker.watch_table().mailboxes();
    if mailboxes.is_empty() {
        return;
    }
    worker.count_idle_checks(mailboxes.len());
    let synced = tokio::task::spawn_blocking(move || {
        for mailbox in &mailboxes {
            if let Err(e) = mailbox.sync() {
                tracing::debug!("IDLE check of {}: {e}", mailbox.name());
            }
        }
        mailboxes
    })
    .await;
    // With Broadcast, a sync that found changes already notified the watchers.
    if let (Ok(mailboxes), false) = (synced, broadcast) {
        let table = worker.watch_table();
        for mailbox in mailboxes {
            for key in table.sessions(mailbox.id()) {
                worker.signal(key, PUSH);
            }
        }
    }
}
