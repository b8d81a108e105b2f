//! Live reload of the reg tree: on `SIGHUP` and on any change in the tree's directory, on a
//! thread of its own (`hato-reload`), never on a worker's ring.
//!
//! [`start_reload`] is called by `hato serve` just before the workers start. It blocks `SIGHUP`
//! in the calling thread (every thread spawned afterwards, workers and exporter included,
//! inherits the mask, so the signal is never delivered to a worker and never kills the process),
//! then starts a thread that waits, with one `poll(2)`, on:
//!
//! * a `signalfd(2)` for `SIGHUP`;
//! * an `inotify(7)` watch of the tree's directory (created first if missing) for
//!   `IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_CREATE | IN_MOVED_FROM`, ignoring the
//!   temporary files of `hato reg set` ([`is_temp_file_name`]). If the directory itself is
//!   deleted or renamed away, it is created again and watched again;
//! * an `eventfd(2)` that the [`ReloadWatcher`] guard writes when it is dropped.
//!
//! A burst of events (`hato reg set` is a create, a close and a rename; an editor may do more) is
//! coalesced: after the first one the thread keeps draining for [`COALESCE`] and then reloads
//! once. `hato reg set` is therefore in force about 100 ms later, without a restart.
//!
//! Only `libc` is used (already a dependency): `signalfd` lets one thread wait for the signal and
//! the directory together, which `sigwait(3)` cannot, and the few inotify calls and the 16-byte
//! event header are simpler to read than to add a crate for.
//!
//! # What a reload does
//!
//! See [`Reloader::reload`]. An invalid or unreadable file keeps the value in force, is logged
//! at `warn` with its path, and is counted in `hato_config_reload_errors_total{kind}`; every
//! reload is counted in `hato_config_reloads_total` (a reload as a whole never fails).
//!
//! # What takes effect live
//!
//! Every setting is read per command (or per event) through the snapshot, so a new value applies
//! to existing sessions from their next command — except those in [`RESTART_ONLY`], which are
//! used once at start: `Workers`, `ImapListen`, `ImapsListen`, `MetricsListen`, `LmtpListen`,
//! `DirectorListen` (sockets and threads are made once) and `PasswdFile` (the user directory is opened once; the file's
//! *content* is reloaded on change by the directory itself). A change to one of these is logged
//! at `warn` as needing a restart; the new value is still stored in the snapshot, so that it
//! shows what the next start will use.
//!
//! Command-line overrides (`hato serve --imap/--metrics/--lmtp`) survive reloads: a restart-only
//! setting is copied from the tree into the snapshot only when its file changes.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter};
use tracing::{info, warn};

use super::error::ProblemKind;
use super::registry::{SettingId, definitions};
use super::settings::Settings;
use super::snapshot::{Reload, SharedSettings};
use super::tree::{RegTree, is_temp_file_name};
use crate::sys;

/// Counter: reloads done (SIGHUP or a change in the directory).
pub const RELOADS_METRIC: &str = "hato_config_reloads_total";
/// Counter, label `kind` ([`ProblemKind::as_str`]): problems found by reloads. A file that stays
/// invalid is counted again at each reload.
pub const RELOAD_ERRORS_METRIC: &str = "hato_config_reload_errors_total";

/// How long a burst of directory events is drained before the one reload it causes.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Settings used only at start; a change needs a restart (see the module doc).
pub const RESTART_ONLY: &[SettingId] = &[
    SettingId::Workers,
    SettingId::ImapListen,
    SettingId::MetricsListen,
    SettingId::LmtpListen,
    SettingId::PasswdFile,
    SettingId::ImapsListen,
    SettingId::RunAsUser,
    SettingId::RunAsGroup,
    SettingId::DirectorListen,
];

/// Whether a change of setting `id` needs a restart to take effect.
pub fn needs_restart(id: SettingId) -> bool {
    RESTART_ONLY.contains(&id)
}

/// Describes the reload metrics and registers them at zero, so they are exported before the
/// first reload. Call once the Prometheus recorder is installed (calls before are lost); the
/// reload thread also calls it at each reload, which is harmless.
pub fn describe_reload_metrics() {
    describe_counter!(
        RELOADS_METRIC,
        "Reloads of the reg tree (on SIGHUP or a change in its directory)."
    );
    describe_counter!(
        RELOAD_ERRORS_METRIC,
        "Problems found in the reg tree by reloads, by kind; an invalid file keeps the value in force."
    );
    counter!(RELOADS_METRIC).increment(0);
    for kind in [
        ProblemKind::Invalid,
        ProblemKind::Unknown,
        ProblemKind::Unreadable,
    ] {
        counter!(RELOAD_ERRORS_METRIC, "kind" => kind.as_str()).increment(0);
    }
}

/// The reload itself, without the thread: what the watcher does on each trigger.
///
/// It must be the only writer of the snapshot while it is used (it loads, then stores).
pub struct Reloader {
    tree: RegTree,
    settings: SharedSettings,
    /// What the files gave at the last load, without command-line overrides; a restart-only
    /// setting is copied into the snapshot only when this changes.
    on_disk: Settings,
    /// The snapshot when the reloader was made: the values of the restart-only settings
    /// really in use until the next start.
    started: Arc<Settings>,
}

impl Reloader {
    /// Reads the tree once to know what its files say now; the snapshot is not touched.
    pub fn new(tree: RegTree, settings: SharedSettings) -> Reloader {
        let on_disk = tree.load().settings;
        let started = settings.load_full();
        Reloader {
            tree,
            settings,
            on_disk,
            started,
        }
    }

    pub fn tree(&self) -> &RegTree {
        &self.tree
    }

    /// Re-reads the tree and swaps the result into the snapshot:
    ///
    /// * a valid file gives its value, a missing file the default, an invalid or unreadable file
    ///   keeps the value in force;
    /// * a restart-only setting ([`needs_restart`]) is taken from the tree only when its file
    ///   changed since the last reload (so command-line overrides stay), and its change is
    ///   logged at `warn` as needing a restart (at `info` if it went back to the value in use);
    /// * every problem is logged at `warn` with its path, every other change at `info`;
    /// * the reload is counted in [`RELOADS_METRIC`], each problem in [`RELOAD_ERRORS_METRIC`].
    pub fn reload(&mut self) -> Reload {
        let report = self.tree.load_over(&self.on_disk);
        let current = self.settings.load_full();
        let mut next = Settings::clone(&current);
        for def in definitions() {
            let file_changed =
                self.on_disk.value_text(def.id) != report.settings.value_text(def.id);
            if file_changed || !needs_restart(def.id) {
                next.copy_field(&report.settings, def.id);
            }
        }
        self.on_disk = report.settings;
        let changes = current.changes(&next);
        let settings = if changes.is_empty() {
            current
        } else {
            self.settings.store(next);
            self.settings.load_full()
        };

        for p in &report.problems {
            warn!(path = %p.path.display(), kind = p.kind.as_str(), "reg tree: {}", p.reason);
        }
        for c in &changes {
            let setting = c.def.name;
            if !needs_restart(c.def.id) {
                info!(setting, old = %c.old, new = %c.new, "reg tree: setting changed");
                continue;
            }
            let in_use = self.started.value_text(c.def.id);
            if c.new == in_use {
                info!(setting, old = %c.old, new = %c.new, "reg tree: setting changed back to the value in use");
            } else {
                warn!(
                    setting, old = %c.old, new = %c.new, in_use = %in_use,
                    "reg tree: setting changed; it needs a restart to take effect"
                );
            }
        }

        describe_reload_metrics();
        counter!(RELOADS_METRIC).increment(1);
        for p in &report.problems {
            counter!(RELOAD_ERRORS_METRIC, "kind" => p.kind.as_str()).increment(1);
        }
        Reload {
            settings,
            changes,
            problems: report.problems,
        }
    }
}

/// Keeps the reload thread running; dropping it stops the thread (and waits for it).
/// `SIGHUP` stays blocked in the process afterwards.
#[must_use = "the reload thread stops when the watcher is dropped"]
pub struct ReloadWatcher {
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ReloadWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadWatcher").finish_non_exhaustive()
    }
}

impl Drop for ReloadWatcher {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, a valid readable u64, to an eventfd we own.
        let _ = unsafe {
            libc::write(
                self.stop.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                mem::size_of::<u64>(),
            )
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Blocks `SIGHUP` in the calling thread and starts the reload thread for `tree` and
/// `settings` (see the module doc).
///
/// Call it from the thread that then spawns the workers, before spawning them: threads inherit
/// the signal mask, and a thread without `SIGHUP` blocked would take the signal and die of it.
/// Child processes inherit the blocked mask too.
///
/// Fails only if the signal cannot be blocked, a descriptor cannot be made or the thread cannot
/// start. If the directory cannot be watched (created, or inotify limits), that is logged and
/// the thread runs on `SIGHUP` alone, trying to watch again at each `SIGHUP`.
pub fn start_reload(tree: RegTree, settings: SharedSettings) -> io::Result<ReloadWatcher> {
    let signal = block_sighup()?;
    let stop = Arc::new(sys::owned_fd(
        // SAFETY: eventfd(2) takes no pointers.
        unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
    )?);
    let mut dir = DirWatch::new(tree.root().to_path_buf());
    if let Err(e) = dir.watch(&tree) {
        warn!(
            path = %tree.root().display(),
            "reg tree: cannot watch the directory ({e}); changes apply on SIGHUP only"
        );
    }
    let reloader = Reloader::new(tree, settings);
    let thread = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("hato-reload".to_string())
            .spawn(move || run(reloader, signal, dir, &stop))?
    };
    Ok(ReloadWatcher {
        stop,
        thread: Some(thread),
    })
}

/// Blocks SIGHUP in this thread; a signalfd that reads it.
fn block_sighup() -> io::Result<OwnedFd> {
    sys::block_signals(&[libc::SIGHUP], libc::SFD_NONBLOCK)
}

/// What woke the thread up.
#[derive(Debug, Default, Clone, Copy)]
struct Triggers {
    sighup: bool,
    /// A relevant change in the directory.
    changed: bool,
    /// The directory itself went away (deleted, renamed): watch the path again.
    rewatch: bool,
}

impl Triggers {
    fn any(self) -> bool {
        self.sighup || self.changed || self.rewatch
    }

    fn merge(&mut self, other: Triggers) {
        self.sighup |= other.sighup;
        self.changed |= other.changed;
        self.rewatch |= other.rewatch;
    }
}

/// The inotify instance and its one watch on the tree's directory.
struct DirWatch {
    root: PathBuf,
    fd: Option<OwnedFd>,
    wd: Option<libc::c_int>,
}

const WATCH_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_CREATE
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Size of `struct inotify_event` without its name.
const EVENT_HEADER: usize = 16;

impl DirWatch {
    fn new(root: PathBuf) -> DirWatch {
        DirWatch {
            root,
            fd: None,
            wd: None,
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Creates the directory if missing and (re)places the watch on it.
    fn watch(&mut self, tree: &RegTree) -> io::Result<()> {
        if self.fd.is_none() {
            // SAFETY: inotify_init1(2) takes no pointers.
            let fd = sys::owned_fd(unsafe {
                libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK)
            })?;
            self.fd = Some(fd);
        }
        let fd = self.raw_fd();
        if let Some(old) = self.wd.take() {
            // May already be gone (directory deleted); either way it is not ours any more.
            // SAFETY: plain integers.
            unsafe { libc::inotify_rm_watch(fd, old) };
        }
        tree.create_dirs().map_err(io::Error::other)?;
        let path = CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the tree path"))?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), WATCH_MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.wd = Some(wd);
        Ok(())
    }

    /// Reads every queued event.
    fn drain(&mut self) -> io::Result<Triggers> {
        let mut found = Triggers::default();
        let Some(fd) = self.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(found);
        };
        // Room for many events; one event is at most 16 + NAME_MAX + 1 bytes.
        let mut buf = [0u8; 8192];
        while let Some(n) = sys::read_nonblocking(fd, &mut buf)? {
            if n == 0 {
                break;
            }
            found.merge(self.parse(&buf[..n]));
        }
        Ok(found)
    }

    fn parse(&mut self, mut events: &[u8]) -> Triggers {
        let mut found = Triggers::default();
        while events.len() >= EVENT_HEADER {
            let word = |i: usize| {
                u32::from_ne_bytes([events[i], events[i + 1], events[i + 2], events[i + 3]])
            };
            let wd = word(0) as libc::c_int;
            let mask = word(4);
            let len = (word(12) as usize).min(events.len() - EVENT_HEADER);
            let name = &events[EVENT_HEADER..EVENT_HEADER + len];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            events = &events[EVENT_HEADER + len..];

            if mask & libc::IN_Q_OVERFLOW != 0 {
                found.changed = true;
            } else if Some(wd) != self.wd {
                // A watch replaced earlier; its last events (IN_IGNORED) do not matter.
            } else if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED) != 0 {
                found.rewatch = true;
                if mask & libc::IN_IGNORED != 0 {
                    self.wd = None;
                }
            } else if name.is_empty() || !is_temp_file_name(OsStr::from_bytes(name)) {
                found.changed = true;
            }
        }
        found
    }
}

/// Drains whatever is readable.
fn collect(ready: [bool; 3], signal: &OwnedFd, dir: &mut DirWatch) -> Triggers {
    let mut found = Triggers::default();
    if ready[1] {
        let mut info = [0u8; mem::size_of::<libc::signalfd_siginfo>()];
        loop {
            match sys::read_nonblocking(signal.as_raw_fd(), &mut info) {
                Ok(Some(n)) if n > 0 => found.sighup = true,
                Ok(_) => break,
                Err(e) => {
                    warn!("reg tree: reading the SIGHUP signalfd: {e}");
                    break;
                }
            }
        }
    }
    if ready[2] {
        match dir.drain() {
            Ok(t) => found.merge(t),
            Err(e) => {
                // Unexpected; reload anyway so nothing is missed.
                warn!("reg tree: reading inotify events: {e}");
                found.changed = true;
            }
        }
    }
    found
}

/// The reload thread's loop; returns when `stop` is written.
fn run(mut reloader: Reloader, signal: OwnedFd, mut dir: DirWatch, stop: &OwnedFd) {
    loop {
        let fds = [stop.as_raw_fd(), signal.as_raw_fd(), dir.raw_fd()];
        let mut triggers = match sys::poll_readable(fds, None) {
            Ok(ready) if ready[0] => return,
            Ok(ready) => collect(ready, &signal, &mut dir),
            Err(e) => {
                warn!("reg tree: waiting for SIGHUP and changes: {e}");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if !triggers.any() {
            continue;
        }
        // Coalesce the burst: keep draining until COALESCE after the first event.
        let deadline = Instant::now() + COALESCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let fds = [stop.as_raw_fd(), signal.as_raw_fd(), dir.raw_fd()];
            match sys::poll_readable(fds, Some(left)) {
                Ok(ready) if ready[0] => return,
                Ok(ready) => triggers.merge(collect(ready, &signal, &mut dir)),
                Err(_) => break,
            }
        }
        if triggers.rewatch || (triggers.sighup && dir.wd.is_none()) {
            let root = reloader.tree().clone();
            match dir.watch(&root) {
                Ok(()) => {
                    info!(path = %root.root().display(), "reg tree: watching the directory again")
                }
                Err(e) => warn!(
                    path = %root.root().display(),
                    "reg tree: cannot watch the directory ({e}); changes apply on SIGHUP only"
                ),
            }
        }
        let why = if triggers.sighup { "SIGHUP" } else { "change" };
        let done = reloader.reload();
        info!(
            trigger = why,
            changes = done.changes.len(),
            problems = done.problems.len(),
            "reg tree reloaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, RegTree) {
        let dir = tempfile::tempdir().unwrap();
        let tree = RegTree::for_spool(dir.path());
        tree.create_dirs().unwrap();
        (dir, tree)
    }

    #[test]
    fn live_settings_follow_the_tree_and_invalid_files_keep_the_value() {
        let (_dir, tree) = tree();
        tree.set("IDLECmd", "0").unwrap();
        let shared = SharedSettings::new(tree.load().settings);
        let mut r = Reloader::new(tree.clone(), shared.clone());

        let out = r.reload();
        assert!(out.changes.is_empty() && out.problems.is_empty());
        assert!(!shared.load().idle_cmd);

        for bad in ["abc", "-1", "", "99999999999999999999999", "2"] {
            std::fs::write(tree.root().join("IDLECmd.1"), bad).unwrap();
            let out = r.reload();
            assert_eq!(out.problems.len(), 1, "{bad:?}");
            assert_eq!(out.problems[0].kind, ProblemKind::Invalid);
            assert!(out.changes.is_empty(), "{bad:?}");
            assert!(!shared.load().idle_cmd, "{bad:?}");
        }

        tree.set("IDLECmd", "1").unwrap();
        tree.set("IDLELoop", "9").unwrap();
        let out = r.reload();
        assert!(out.problems.is_empty());
        let names: Vec<_> = out.changes.iter().map(|c| c.def.name).collect();
        assert_eq!(names, ["IDLECmd", "IDLELoop"]);
        assert!(shared.load().idle_cmd);
        assert_eq!(shared.load().idle_loop, Duration::from_secs(9));

        // A removed file means the default again.
        tree.reset("IDLELoop").unwrap();
        r.reload();
        assert_eq!(shared.load().idle_loop, Duration::from_secs(5));
    }

    #[test]
    fn overrides_stay_until_their_file_changes() {
        let (_dir, tree) = tree();
        let mut start = tree.load().settings;
        let over: std::net::SocketAddr = "127.0.0.1:4321".parse().unwrap();
        start.imap_listen = over;
        let shared = SharedSettings::new(start);
        let mut r = Reloader::new(tree.clone(), shared.clone());

        tree.set("MaxLineLength", "2000").unwrap();
        let out = r.reload();
        assert_eq!(out.changes.len(), 1);
        assert_eq!(shared.load().imap_listen, over);
        assert_eq!(shared.load().max_line_length, 2000);

        // A changed restart-only file is stored (and logged as needing a restart).
        tree.set("ImapListen", "127.0.0.1:5555").unwrap();
        tree.set("Workers", "3").unwrap();
        let out = r.reload();
        let names: Vec<_> = out.changes.iter().map(|c| c.def.name).collect();
        assert_eq!(names, ["Workers", "ImapListen"]);
        assert!(out.changes.iter().all(|c| needs_restart(c.def.id)));
        assert_eq!(shared.load().imap_listen, "127.0.0.1:5555".parse().unwrap());
        assert_eq!(shared.load().workers, 3);

        // Nothing changed on disk: nothing changes.
        assert!(r.reload().changes.is_empty());
    }

    #[test]
    fn restart_only_list_is_known_settings() {
        for id in RESTART_ONLY {
            assert!(definitions().iter().any(|d| d.id == *id));
        }
        assert!(!needs_restart(SettingId::IdleCmd));
        assert!(needs_restart(SettingId::Workers));
    }

    #[test]
    fn parse_skips_temp_files_and_sees_settings() {
        let mut dir = DirWatch::new(PathBuf::from("/nonexistent"));
        dir.wd = Some(1);
        let event = |wd: i32, mask: u32, name: &str| {
            let mut padded = name.as_bytes().to_vec();
            if !padded.is_empty() {
                padded.resize(name.len().div_ceil(16) * 16 + 16, 0);
            }
            let mut e = Vec::new();
            e.extend_from_slice(&wd.to_ne_bytes());
            e.extend_from_slice(&mask.to_ne_bytes());
            e.extend_from_slice(&0u32.to_ne_bytes());
            e.extend_from_slice(&(padded.len() as u32).to_ne_bytes());
            e.extend_from_slice(&padded);
            e
        };
        let temp = event(1, libc::IN_CLOSE_WRITE, ".hato-tmp.IDLECmd.1.5.0");
        let t = dir.parse(&temp);
        assert!(!t.any());
        let mut both = temp.clone();
        both.extend(event(1, libc::IN_MOVED_TO, "IDLECmd.1"));
        assert!(dir.parse(&both).changed);
        // An old watch's leftovers are ignored; the current watch going away asks for a new one.
        assert!(!dir.parse(&event(7, libc::IN_IGNORED, "")).any());
        let gone = dir.parse(&event(1, libc::IN_DELETE_SELF, ""));
        assert!(gone.rewatch);
        assert!(dir.parse(&event(1, libc::IN_IGNORED, "")).rewatch);
        assert_eq!(dir.wd, None);
        assert!(dir.parse(&event(-1, libc::IN_Q_OVERFLOW, "")).changed);
    }

    /// The thread end to end through inotify (no signal is sent: the test process would die of
    /// it in threads that do not block SIGHUP).
    #[test]
    fn watcher_applies_changes_and_survives_the_directory_going_away() {
        let (_dir, tree) = tree();
        let shared = SharedSettings::new(tree.load().settings);
        let watcher = start_reload(tree.clone(), shared.clone()).unwrap();
        let until = |what: &str, f: &dyn Fn(&Settings) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !f(&shared.load()) {
                assert!(Instant::now() < deadline, "not applied: {what}");
                thread::sleep(Duration::from_millis(20));
            }
        };
        tree.set("IDLECmd", "0").unwrap();
        until("IDLECmd 0", &|s| !s.idle_cmd);
        std::fs::write(tree.root().join("IDLELoop.1"), "12\n").unwrap();
        until("IDLELoop 12", &|s| s.idle_loop == Duration::from_secs(12));

        std::fs::remove_dir_all(tree.root()).unwrap();
        until("defaults after removal", &|s| s.idle_cmd);
        // The directory is created again and watched again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tree.root().is_dir() {
            assert!(Instant::now() < deadline, "directory not recreated");
            thread::sleep(Duration::from_millis(20));
        }
        tree.set("IDLECmd", "0").unwrap();
        until("IDLECmd 0 after rewatch", &|s| !s.idle_cmd);
        drop(watcher);
    }
}
