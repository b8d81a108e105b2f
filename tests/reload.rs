//! Live reload of the reg tree against the real binary on 127.0.0.1: `hato reg set` and direct
//! writes apply without a restart (inotify), SIGHUP reloads, invalid files keep the value in
//! force and are counted.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server, Spool};

/// How long a change may take to apply (the server coalesces events for 100 ms, then reloads).
const APPLY_WITHIN: Duration = Duration::from_secs(2);

const RELOADS: &str = "hato_config_reloads_total";
const INVALID: &str = "hato_config_reload_errors_total{kind=\"invalid\"}";

/// Polls `done` until it holds, for at most [`APPLY_WITHIN`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + APPLY_WITHIN;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {APPLY_WITHIN:?}: {what}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

/// A counter's value; a series not exported yet counts as 0.
fn counter(server: &Server, series: &str) -> f64 {
    server.metric(series).unwrap_or(0.0)
}

fn idle_file(spool: &Spool) -> PathBuf {
    spool.path().join("reg/epost/ims/EPST5IMAP4S/IDLECmd.1")
}

/// A logged-in session that numbers its own tags.
struct Session {
    client: Client,
    n: u32,
}

impl Session {
    fn open(server: &Server) -> Session {
        let mut s = Session {
            client: server.connect(),
            n: 0,
        };
        let (tag, answer) = s.run("LOGIN carol carol-pw");
        assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
        s
    }

    fn tag(&mut self) -> String {
        self.n += 1;
        format!("t{}", self.n)
    }

    fn run(&mut self, command: &str) -> (String, String) {
        let tag = self.tag();
        let answer = self.client.run(&tag, command);
        (tag, answer)
    }

    fn idle_advertised(&mut self) -> bool {
        let tag = self.tag();
        self.client.send(format!("{tag} CAPABILITY\r\n").as_bytes());
        let (untagged, answer) = self.client.until_tagged(&tag);
        assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
        let caps = untagged
            .iter()
            .find(|l| l.starts_with("* CAPABILITY "))
            .unwrap_or_else(|| panic!("no CAPABILITY in {untagged:?}"));
        caps.split_ascii_whitespace().any(|atom| atom == "IDLE")
    }

    /// IDLE is accepted and ends cleanly on DONE.
    fn assert_idle_works(&mut self) {
        let tag = self.tag();
        self.client.send(format!("{tag} IDLE\r\n").as_bytes());
        let line = self.client.line();
        assert!(line.starts_with("+ "), "IDLE not accepted: {line}");
        self.client.send(b"DONE\r\n");
        let (_, answer) = self.client.until_tagged(&tag);
        assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
    }

    fn assert_idle_refused(&mut self) {
        let (tag, answer) = self.run("IDLE");
        assert!(
            answer.starts_with(&format!("{tag} BAD")),
            "IDLE not refused: {answer}"
        );
    }
}

fn alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn sighup(server: &Server) {
    let pid = libc::pid_t::try_from(server.pid()).expect("pid");
    // SAFETY: kill(2) takes plain integers; the pid is our own child, still running.
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP: {}", std::io::Error::last_os_error());
}

#[test]
fn reg_set_switches_idle_on_a_running_server() {
    let spool = Spool::new();
    let server = spool.start();
    let pid = server.pid();
    let mut s = Session::open(&server);
    assert!(s.idle_advertised());
    s.assert_idle_works();

    spool.reg_set("IDLECmd", "0");
    eventually("IDLE no longer advertised", || !s.idle_advertised());
    // The same session (opened before the change) is refused now.
    s.assert_idle_refused();
    assert!(!Session::open(&server).idle_advertised());

    spool.reg_set("IDLECmd", "1");
    eventually("IDLE advertised again", || s.idle_advertised());
    s.assert_idle_works();

    // No restart: the session opened first is still served, by the same process.
    assert_eq!(server.pid(), pid);
    assert!(alive(pid));
    let (tag, answer) = s.run("NOOP");
    assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
    assert!(counter(&server, RELOADS) >= 2.0);
    assert_eq!(counter(&server, INVALID), 0.0);
}

#[test]
fn sighup_reloads_what_inotify_does_not_report() {
    let spool = Spool::new();
    spool.reg_set("IDLECmd", "1");
    let server = spool.start();
    let mut s = Session::open(&server);
    assert!(s.idle_advertised());
    let before = counter(&server, RELOADS);

    // Rewritten in place and kept open: no close, rename, create or delete, so the directory
    // watch reports nothing and only SIGHUP can pick the new value up.
    let mut file = OpenOptions::new()
        .write(true)
        .open(idle_file(&spool))
        .expect("open IDLECmd.1");
    file.write_all(b"0\n").expect("write IDLECmd.1");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counter(&server, RELOADS),
        before,
        "reloaded without a trigger"
    );
    assert!(s.idle_advertised(), "applied without a trigger");

    sighup(&server);
    eventually("a reload counted after SIGHUP", || {
        counter(&server, RELOADS) > before
    });
    eventually("IDLECmd 0 applied by SIGHUP", || !s.idle_advertised());
    s.assert_idle_refused();

    // SIGHUP never stops the server, however often it comes.
    let after_first = counter(&server, RELOADS);
    sighup(&server);
    eventually("a second reload after a second SIGHUP", || {
        counter(&server, RELOADS) > after_first
    });
    assert!(alive(server.pid()));
    assert!(!Session::open(&server).idle_advertised());
    drop(file);
}

#[test]
fn invalid_files_keep_the_value_in_force_and_are_counted() {
    let spool = Spool::new();
    // Not the default, so falling back to the default would show.
    spool.reg_set("IDLECmd", "0");
    let server = spool.start();
    let mut s = Session::open(&server);
    assert!(!s.idle_advertised());
    let path = idle_file(&spool);

    for bad in ["abc", "-1", "", "99999999999999999999999", "2"] {
        let before = counter(&server, INVALID);
        std::fs::write(&path, bad).expect("write IDLECmd.1");
        eventually(&format!("{bad:?} counted as invalid"), || {
            counter(&server, INVALID) > before
        });
        assert!(!s.idle_advertised(), "{bad:?} changed the value in force");
        s.assert_idle_refused();
        assert!(!Session::open(&server).idle_advertised(), "{bad:?}");
    }

    // A valid value written directly still applies: the watch survived the bad ones.
    std::fs::write(&path, "1\n").expect("write IDLECmd.1");
    eventually("IDLECmd 1 applied", || s.idle_advertised());
    s.assert_idle_works();
}

#[test]
fn restart_only_settings_leave_the_running_server_alone() {
    let spool = Spool::new();
    let server = spool.start();
    let mut s = Session::open(&server);
    let before = counter(&server, RELOADS);

    // Stored and logged as needing a restart; the listeners and workers stay as they are.
    spool.reg_set("ImapListen", "127.0.0.1:1");
    spool.reg_set("Workers", "1");
    spool.reg_set("MetricsListen", "127.0.0.1:1");
    eventually("the restart-only changes reloaded", || {
        counter(&server, RELOADS) > before
    });
    let (tag, answer) = s.run("NOOP");
    assert!(answer.starts_with(&format!("{tag} OK")), "{answer}");
    assert!(Session::open(&server).idle_advertised());

    // Live settings still apply after them.
    spool.reg_set("IDLECmd", "0");
    eventually("IDLECmd 0 applied", || !s.idle_advertised());
}
