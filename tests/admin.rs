//! The admin socket end to end: `hato who` lists exactly the live sessions, `hato kick` closes
//! them with `* BYE` (and they leave `who` and the session gauge), `hato reload` and
//! `hato stats` work, a user without permission is refused, and systemd is told when hato is
//! ready (`Type=notify`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Server, Spool};

fn login(server: &Server, user: &str) -> Client {
    let mut c = server.connect();
    let answer = c.run("l", &format!("LOGIN {user} {user}-pw"));
    assert!(answer.starts_with("l OK"), "{answer}");
    c
}

/// `hato who` rows (without the header and the count line), as columns.
fn who(spool: &Spool) -> Vec<Vec<String>> {
    let out = spool.hato_ok(&["who"]);
    let mut lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|h| h.starts_with("USER")),
        "{out}"
    );
    let count = lines.pop().unwrap_or_default();
    let rows: Vec<Vec<String>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(count, format!("{} sessions", rows.len()), "{out}");
    rows
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn who_lists_the_live_sessions_and_kick_closes_them() {
    let spool = Spool::new();
    spool.reg_set("Workers", "2");
    let server = spool.start();
    let mut selected = login(&server, "carol");
    assert!(selected.run("s", "SELECT INBOX").starts_with("s OK"));
    let mut idling = login(&server, "carol");
    assert!(idling.run("s", "SELECT Sent").starts_with("s OK"));
    idling.send(b"i IDLE\r\n");
    assert_eq!(idling.line(), "+ idling");
    let mut alice = login(&server, "alice");
    let _anonymous = server.connect();

    let rows = who(&spool);
    let mut summary: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[3].clone(), r[6].clone()))
        .collect();
    summary.sort();
    let expect = |u: &str, s: &str, m: &str| (u.to_string(), s.to_string(), m.to_string());
    assert_eq!(
        summary,
        vec![
            expect("-", "not_authenticated", "-"),
            expect("alice", "authenticated", "-"),
            expect("carol", "idle", "Sent"),
            expect("carol", "selected", "INBOX"),
        ]
    );
    for row in &rows {
        assert_eq!(row[1], "127.0.0.1");
        assert_eq!(row[4], "plain");
        assert!(row[2] == "0" || row[2] == "1", "worker {}", row[2]);
    }

    let out = spool.hato_ok(&["kick", "carol"]);
    assert!(out.starts_with("2 sessions of carol closed"), "{out}");
    for c in [&mut selected, &mut idling] {
        assert_eq!(c.line(), "* BYE Disconnected by the administrator");
        assert!(c.closed());
    }
    wait_until("the kicked sessions to leave", || {
        who(&spool).iter().all(|r| r[0] != "carol")
    });
    assert_eq!(who(&spool).len(), 2);
    wait_until("the session gauge", || {
        server.metric_sum("hato_sessions", &[]) == 2.0
    });
    assert_eq!(
        server.metric("hato_sessions_closed_total{reason=\"kicked\"}"),
        Some(2.0)
    );
    // --ip: only sessions from that address.
    let out = spool.hato_ok(&["kick", "alice", "--ip", "127.0.0.9"]);
    assert!(out.starts_with("0 sessions"), "{out}");
    assert!(alice.run("n", "NOOP").starts_with("n OK"));
    let out = spool.hato_ok(&["kick", "alice", "--ip", "127.0.0.1"]);
    assert!(out.starts_with("1 sessions"), "{out}");
    assert_eq!(alice.line(), "* BYE Disconnected by the administrator");
}

#[test]
fn reload_and_stats_answer() {
    let spool = Spool::new();
    let server = spool.start();
    let _c = login(&server, "carol");
    let before = server.metric("hato_config_reloads_total").unwrap_or(0.0);
    let out = spool.hato_ok(&["reload"]);
    assert!(out.contains("reload requested"), "{out}");
    wait_until("the reload", || {
        server.metric("hato_config_reloads_total").unwrap_or(0.0) > before
    });
    // The per-state gauges are counted once a second.
    let mut stats = String::new();
    wait_until("the per-state gauges", || {
        stats = spool.hato_ok(&["stats"]);
        stats.contains("1 authenticated")
    });
    assert!(stats.contains("sessions     1 open of "), "{stats}");
    assert!(stats.contains("logins       1 ok, 0 failed"), "{stats}");
}

#[test]
fn the_admin_socket_refuses_other_users() {
    let spool = Spool::new();
    let server = spool.start();
    let _c = login(&server, "carol");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    assert_eq!(mode(&spool.path().join("run")), 0o700);
    assert_eq!(mode(&spool.path().join("run/admin.sock")), 0o600);
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        // Only root can become another user to try; the modes above are what protects.
        return;
    }
    let run_as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_hato"))
            .args(["who", "--spool"])
            .arg(spool.path())
            .output()
            .expect("run setpriv")
    };
    // The socket's directory is the owner's alone.
    let out = run_as_nobody();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Even with the file-system permissions opened, the server checks who is asking.
    let open = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(spool.path(), 0o755);
    open(&spool.path().join("run"), 0o755);
    open(&spool.path().join("run/admin.sock"), 0o777);
    let out = run_as_nobody();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    // The owner still may.
    assert_eq!(who(&spool).len(), 1);
}

#[test]
fn systemd_is_told_when_hato_is_ready() {
    let spool = Spool::new();
    let socket_path = spool.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hato"))
        .args(["serve", "--imap", "127.0.0.1:0", "--lmtp", "127.0.0.1:0"])
        .arg("--metrics")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--spool")
        .arg(spool.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("HATO_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn hato serve");
    let mut buf = [0u8; 64];
    let received = notify.recv(&mut buf);
    let _ = child.kill();
    let _ = child.wait();
    let n = received.expect("READY=1 from hato");
    assert_eq!(&buf[..n], b"READY=1");
}
