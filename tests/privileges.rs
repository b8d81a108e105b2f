//! Started as root with `RunAsUser.1`, hato binds its ports and then runs as that user: every
//! uid of the process is the user's, and mail is still served and stored (in a spool the user
//! owns). Needs root; as anyone else only the refusal to switch is checked.

mod common;

use std::process::Command;

use common::Spool;

/// The real, effective, saved and file-system uids of a process.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .map(|u| u.parse().expect("uid"))
        .collect()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn started_as_root_it_runs_as_runasuser() {
    let spool = Spool::new();
    spool.reg_set("RunAsUser", "nobody");
    if !is_root() {
        // Not root: the setting is reported and ignored; the server runs as it was started.
        let server = spool.start();
        assert_eq!(uids(server.pid())[1], uids(std::process::id())[1]);
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(spool.path())
        .status()
        .expect("chown");
    assert!(status.success());
    let server = spool.start();
    assert_eq!(uids(server.pid()), vec![65534; 4], "every uid is nobody's");
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c.send(b"a APPEND INBOX {22+}\r\nSubject: dropped\r\n\r\nhi\r\n");
    let (_, answer) = c.until_tagged("a");
    assert!(answer.starts_with("a OK"), "{answer}");
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    // The admin socket was handed over: the user the server runs as may use it.
    let out = spool.hato_ok(&["who"]);
    assert!(out.contains("carol"), "{out}");
}

#[test]
fn an_unknown_runasuser_stops_the_start() {
    if !is_root() {
        return;
    }
    let spool = Spool::new();
    spool.reg_set("RunAsUser", "no-such-user-hato");
    let out = Command::new(env!("CARGO_BIN_EXE_hato"))
        .args(["serve", "--imap", "127.0.0.1:0", "--lmtp", "127.0.0.1:0"])
        .arg("--metrics")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--spool")
        .arg(spool.path())
        .output()
        .expect("run hato serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no user \"no-such-user-hato\""), "{stderr}");
}
