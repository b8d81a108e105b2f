//! Sees writers outside hato (another MDA, a script) in the folders IDLE sessions wait on, at
//! once, through `inotify(7)`, on a thread of its own (`hato-folders`), never on a worker's ring.
//!
//! * **One per process.** [`FolderWatcher::start`] makes one inotify instance and its thread
//!   when the runtime starts ([`super::idle::Notices::new`], called once by `serve`); the workers
//!   share it through an `Arc`.
//! * **Watches follow the watch tables.** When a worker's watch table gains its first IDLE
//!   session on a mailbox it calls [`FolderWatcher::watch`]; when it loses the last one,
//!   [`FolderWatcher::unwatch`]. The watcher counts those per mailbox across workers, behind a
//!   `Mutex` (not the command path), and watches the folder's `new/` and `cur/` for
//!   `IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB` while the count is
//!   above zero (a directory that two open folders share keeps its watch until both leave).
//! * **Catching up.** A folder newly watched is also synced once by the thread, for what was
//!   written between its IDLE session's `+ idling` and the watch (the watch is placed just after
//!   that line is sent).
//! * **Events.** After the first event the thread keeps draining for [`COALESCE`], then calls
//!   [`Mailbox::sync`] once on each folder concerned. A sync that finds a change publishes it and
//!   the store's change hook tells the watching workers, which push to their IDLE sessions;
//!   nothing else is needed. hato's own writes cause events too; their sync is cheap (it finds
//!   the index already in line), and the `new/` → `cur/` renames a sync makes cause at most one
//!   more sync, which changes nothing and so causes no events. Events are counted in
//!   `hato_folder_events_total`.
//! * **Fallback.** If the instance cannot be made, or the watch limit
//!   (`fs.inotify.max_user_watches`) is reached, that is logged once at `warn` and the IDLELoop
//!   re-read (an mtime check per watched folder, which also covers NFS, where inotify sees only
//!   local writers) is what catches those writers.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter};
use tracing::{debug, warn};

use crate::store::Mailbox;
use crate::sys;

/// Counter: inotify events read on watched folders.
pub const FOLDER_EVENTS_METRIC: &str = "hato_folder_events_total";

/// How long a burst of events is drained before the one sync per folder it causes.
pub const COALESCE: Duration = Duration::from_millis(50);

const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ATTRIB
    | libc::IN_ONLYDIR;

/// Size of `struct inotify_event` without its name.
const EVENT_HEADER: usize = 16;

/// The process-wide watcher of the folders IDLE sessions wait on.
pub(crate) struct FolderWatcher {
    fd: OwnedFd,
    /// An eventfd that wakes the thread for folders newly watched ([`State::pending`]).
    wake: OwnedFd,
    state: Mutex<State>,
    /// The watch limit was reported once already.
    limit_warned: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Per mailbox id: the mailbox, how many workers watch it, its watch descriptors.
    folders: HashMap<usize, Folder>,
    /// Per watch descriptor: the mailboxes (ids) using it; inotify gives one descriptor per
    /// directory, so two open folders on one directory share it.
    by_wd: HashMap<libc::c_int, Vec<usize>>,
    /// Folders newly watched, to be synced once by the thread.
    pending: HashSet<usize>,
}

struct Folder {
    mailbox: Arc<Mailbox>,
    workers: usize,
    wds: Vec<libc::c_int>,
}

impl FolderWatcher {
    /// Makes the inotify instance and starts its thread; `None` (logged at `warn`) if either
    /// fails, in which case only the IDLELoop re-read sees writers outside hato.
    pub(crate) fn start() -> Option<Arc<FolderWatcher>> {
        describe_counter!(
            FOLDER_EVENTS_METRIC,
            "inotify events on folders IDLE sessions wait on."
        );
        // SAFETY: inotify_init1(2) takes no pointers.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            warn!(
                "folders: cannot use inotify ({}); outside writers are seen at the IDLELoop check only",
                io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: `raw` was just returned open by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: eventfd(2) takes no pointers.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            warn!(
                "folders: cannot make an eventfd ({}); outside writers are seen at the IDLELoop check only",
                io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: as above.
        let wake = unsafe { OwnedFd::from_raw_fd(raw) };
        let watcher = Arc::new(FolderWatcher {
            fd,
            wake,
            state: Mutex::new(State::default()),
            limit_warned: AtomicBool::new(false),
        });
        let thread_side = watcher.clone();
        match thread::Builder::new()
            .name("hato-folders".into())
            .spawn(move || thread_side.run())
        {
            Ok(_) => Some(watcher),
            Err(e) => {
                warn!(
                    "folders: cannot start the watcher thread ({e}); outside writers are seen at the IDLELoop check only"
                );
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more worker has IDLE sessions on `mailbox`.
    pub(crate) fn watch(&self, mailbox: &Arc<Mailbox>) {
        let mut st = self.lock();
        let id = mailbox.id();
        if let Some(folder) = st.folders.get_mut(&id) {
            folder.workers += 1;
            return;
        }
        let mut wds = Vec::with_capacity(2);
        for sub in ["new", "cur"] {
            match self.add_watch(&mailbox.dir().join(sub)) {
                Ok(wd) => {
                    st.by_wd.entry(wd).or_default().push(id);
                    wds.push(wd);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    if !self.limit_warned.swap(true, Ordering::Relaxed) {
                        warn!(
                            "folders: inotify watch limit reached (fs.inotify.max_user_watches); some outside writers are seen at the IDLELoop check only"
                        );
                    }
                }
                Err(e) => debug!("folders: cannot watch {sub}/ of {}: {e}", mailbox.name()),
            }
        }
        let watched = !wds.is_empty();
        st.folders.insert(
            id,
            Folder {
                mailbox: mailbox.clone(),
                workers: 1,
                wds,
            },
        );
        if watched {
            st.pending.insert(id);
            drop(st);
            let one = 1u64.to_ne_bytes();
            // SAFETY: `one` is valid for 8 bytes during the call. A full counter (EAGAIN) means
            // the thread is woken already.
            unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    one.as_ptr().cast::<libc::c_void>(),
                    one.len(),
                )
            };
        }
    }

    /// One worker fewer has IDLE sessions on mailbox `id`.
    pub(crate) fn unwatch(&self, id: usize) {
        let mut st = self.lock();
        let Some(folder) = st.folders.get_mut(&id) else {
            return;
        };
        folder.workers -= 1;
        if folder.workers > 0 {
            return;
        }
        let Some(folder) = st.folders.remove(&id) else {
            return;
        };
        st.pending.remove(&id);
        for wd in folder.wds {
            let Some(users) = st.by_wd.get_mut(&wd) else {
                continue; // already gone (directory removed)
            };
            users.retain(|&u| u != id);
            if users.is_empty() {
                st.by_wd.remove(&wd);
                // May already be gone with its directory; either way it is not ours any more.
                // SAFETY: plain integers.
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            }
        }
    }

    fn add_watch(&self, dir: &Path) -> io::Result<libc::c_int> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a folder path"))?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), WATCH_MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// The thread: wait, coalesce, sync; forever (the watcher lives as long as the process).
    fn run(&self) {
        let fds = [self.fd.as_raw_fd(), self.wake.as_raw_fd()];
        loop {
            let mut touched = Touched::default();
            match sys::poll_readable(fds, None) {
                Ok(ready) => self.collect(ready, &mut touched),
                Err(e) => {
                    warn!("folders: waiting for inotify events: {e}");
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            if touched.is_empty() {
                continue;
            }
            let deadline = Instant::now() + COALESCE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match sys::poll_readable(fds, Some(left)) {
                    Ok(ready) => self.collect(ready, &mut touched),
                    Err(_) => break,
                }
            }
            self.sync(&touched);
        }
    }

    /// Takes what is ready: inotify events, folders newly watched.
    fn collect(&self, ready: [bool; 2], touched: &mut Touched) {
        if ready[0] {
            self.drain(touched);
        }
        if ready[1] {
            let mut count = [0u8; 8];
            // Resets the counter; an error means nothing was pending.
            let _ = sys::read_nonblocking(self.wake.as_raw_fd(), &mut count);
        }
        // Also checked without the wake-up: a wake-up may be read in a later round.
        let mut st = self.lock();
        if !st.pending.is_empty() {
            touched.ids.extend(st.pending.drain());
        }
    }

    /// Reads every queued event into `touched`.
    fn drain(&self, touched: &mut Touched) {
        // Room for many events; one event is at most 16 + NAME_MAX + 1 bytes.
        let mut buf = [0u8; 8192];
        loop {
            match sys::read_nonblocking(self.fd.as_raw_fd(), &mut buf) {
                Ok(Some(n)) if n > 0 => self.parse(&buf[..n], touched),
                Ok(_) => break,
                Err(e) => {
                    // Unexpected; sync everything so nothing is missed.
                    warn!("folders: reading inotify events: {e}");
                    touched.all = true;
                    break;
                }
            }
        }
    }

    fn parse(&self, mut events: &[u8], touched: &mut Touched) {
        let mut st = self.lock();
        let mut count = 0u64;
        while events.len() >= EVENT_HEADER {
            let word = |i: usize| {
                u32::from_ne_bytes([events[i], events[i + 1], events[i + 2], events[i + 3]])
            };
            let wd = word(0) as libc::c_int;
            let mask = word(4);
            let len = (word(12) as usize).min(events.len() - EVENT_HEADER);
            events = &events[EVENT_HEADER + len..];
            count += 1;
            if mask & libc::IN_Q_OVERFLOW != 0 {
                touched.all = true;
            } else if mask & libc::IN_IGNORED != 0 {
                // The directory went away (or the watch was removed): forget the descriptor.
                if let Some(users) = st.by_wd.remove(&wd) {
                    for id in users {
                        if let Some(folder) = st.folders.get_mut(&id) {
                            folder.wds.retain(|&w| w != wd);
                        }
                        touched.ids.insert(id);
                    }
                }
            } else if let Some(users) = st.by_wd.get(&wd) {
                touched.ids.extend(users.iter().copied());
            }
        }
        counter!(FOLDER_EVENTS_METRIC).increment(count);
    }

    /// Syncs the folders concerned (outside the lock: a sync may take a while).
    fn sync(&self, touched: &Touched) {
        let mailboxes: Vec<Arc<Mailbox>> = {
            let st = self.lock();
            st.folders
                .iter()
                .filter(|(id, _)| touched.all || touched.ids.contains(id))
                .map(|(_, f)| f.mailbox.clone())
                .collect()
        };
        for mailbox in mailboxes {
            if let Err(e) = mailbox.sync() {
                debug!("folders: sync of {} after a change: {e}", mailbox.name());
            }
        }
    }
}

/// The folders a burst of events concerns.
#[derive(Default)]
struct Touched {
    ids: HashSet<usize>,
    /// The queue overflowed (or could not be read): every watched folder.
    all: bool,
}

impl Touched {
    fn is_empty(&self) -> bool {
        !self.all && self.ids.is_empty()
    }
}
