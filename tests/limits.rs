//! The protective limits, end to end: the user+IP session cap (Outlook's session explosion),
//! the global session cap, NOOP storm pacing, pipelining turns, repeated BAD commands, login
//! throttling per address, and the graceful shutdown on SIGTERM. Each outcome is also checked
//! in the metrics operators see.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Server, Spool};

/// A connection to `server` from the source address `from` (any 127.0.0.0/8 address works on
/// Linux loopback).
fn connect_from(server: &Server, from: [u8; 4]) -> Client {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into()).expect("bind source address");
    socket.connect(&server.imap.into()).expect("connect");
    Client::greeted(TcpStream::from(socket))
}

fn login(c: &mut Client, tag: &str, user: &str) -> String {
    c.run(tag, &format!("LOGIN {user} {user}-pw"))
}

fn limit_hits(server: &Server, limit: &str) -> f64 {
    server
        .metric(&format!("hato_limit_hits_total{{limit=\"{limit}\"}}"))
        .unwrap_or(0.0)
}

/// Waits (bounded) for a metric to reach `want`; the server counts after it answers.
fn wait_for_metric(server: &Server, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = server.metric(series).unwrap_or(0.0);
        if got >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_outlook_opening_sessions_without_bound_is_capped_per_user_and_address() {
    let spool = Spool::new();
    spool.reg_set("MaxUserIpSessions", "3");
    spool.reg_set("Workers", "2");
    spool.hato_ok(&["user", "add", "dave", "--password", "dave-pw"]);
    let server = spool.start();

    // "Outlook": carol keeps opening sessions from 127.0.0.1.
    let mut outlook: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = server.connect();
            assert!(login(&mut c, &format!("l{i}"), "carol").starts_with(&format!("l{i} OK")));
            c
        })
        .collect();
    // Another user on the same address, and carol from another address, are not affected.
    let mut dave: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = server.connect();
            assert!(login(&mut c, "d", "dave").starts_with("d OK"), "dave {i}");
            c
        })
        .collect();
    let mut elsewhere = connect_from(&server, [127, 0, 0, 2]);
    assert!(login(&mut elsewhere, "e", "carol").starts_with("e OK"));

    // The fourth from 127.0.0.1 works; the oldest one is closed with BYE [LIMIT].
    let mut newest = server.connect();
    assert!(login(&mut newest, "n", "carol").starts_with("n OK"));
    let bye = outlook[0].line();
    assert!(
        bye.starts_with("* BYE [LIMIT]"),
        "the oldest session is told why: {bye:?}"
    );
    assert!(outlook[0].closed());
    for (i, c) in outlook.iter_mut().enumerate().skip(1) {
        assert!(c.run("k", "NOOP").starts_with("k OK"), "session {i} kept");
    }
    assert!(newest.run("k", "SELECT INBOX").starts_with("k OK"));
    for c in dave.iter_mut().chain([&mut elsewhere]) {
        assert!(c.run("k", "NOOP").starts_with("k OK"));
    }
    assert_eq!(
        wait_for_metric(
            &server,
            "hato_limit_hits_total{limit=\"user_ip_evicted\"}",
            1.0
        ),
        1.0
    );
    assert_eq!(
        wait_for_metric(
            &server,
            "hato_sessions_closed_total{reason=\"evicted\"}",
            1.0
        ),
        1.0
    );

    // Refusing instead (UserIpEvict.1=0, applied live): the new login gets NO [LIMIT] and
    // every open session stays.
    spool.reg_set("UserIpEvict", "0");
    let mut admitted_before_reload = Vec::new();
    let mut refused = server.connect();
    let mut answer = String::new();
    for attempt in 0..50 {
        answer = login(&mut refused, &format!("r{attempt}"), "carol");
        if answer.contains("[LIMIT]") {
            break;
        }
        // The reload had not landed yet and this login evicted an older one; keep it open so
        // the cap stays full, and try again.
        admitted_before_reload.push(std::mem::replace(&mut refused, server.connect()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(answer.contains(" NO [LIMIT]"), "{answer}");
    assert!(limit_hits(&server, "user_ip_refused") >= 1.0);
    // The refused connection is still usable for another user.
    assert!(login(&mut refused, "o", "alice").starts_with("o OK"));
}

#[test]
fn connections_over_maxsessions_get_bye_limit() {
    let spool = Spool::new();
    spool.reg_set("MaxSessions", "2");
    let server = spool.start();
    let mut first = server.connect();
    let _second = server.connect();
    let mut stream = TcpStream::connect(server.imap).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("read until close");
    assert!(answer.starts_with("* BYE [LIMIT]"), "{answer:?}");
    assert_eq!(limit_hits(&server, "sessions"), 1.0);
    // A place frees when a session leaves.
    assert!(first.run("o", "LOGOUT").starts_with("o OK"));
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(server.imap).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut greeting = [0u8; 4];
        std::io::Read::read_exact(&mut c, &mut greeting).expect("greeting");
        if &greeting == b"* OK" {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_noop_storm_is_paced_and_every_noop_answered() {
    let spool = Spool::new();
    spool.reg_set("NOOPRateLimit", "10");
    let server = spool.start();
    let mut storm = server.connect();
    assert!(login(&mut storm, "l", "carol").starts_with("l OK"));
    assert!(storm.run("s", "SELECT INBOX").starts_with("s OK"));
    // 25 NOOPs at once: a second's worth (10) passes, the rest is paced.
    let burst: String = (0..25).map(|i| format!("n{i} NOOP\r\n")).collect();
    storm.send(burst.as_bytes());
    // Meanwhile another session is served as usual.
    let mut other = server.connect();
    assert!(login(&mut other, "l", "carol").starts_with("l OK"));
    assert!(other.run("s", "SELECT INBOX").starts_with("s OK"));
    for i in 0..25 {
        let (_, tagged) = storm.until_tagged(&format!("n{i}"));
        assert_eq!(tagged, format!("n{i} OK NOOP completed"));
    }
    assert!(limit_hits(&server, "noop_rate") >= 1.0);
    assert_eq!(
        server.metric("hato_noop_total{outcome=\"unchanged\"}"),
        Some(25.0)
    );
}

#[test]
fn a_long_pipeline_is_answered_in_turns_and_in_order() {
    let spool = Spool::new();
    spool.reg_set("MaxPipelined", "4");
    spool.reg_set("NOOPRateLimit", "0");
    let server = spool.start();
    let mut c = server.connect();
    assert!(login(&mut c, "l", "carol").starts_with("l OK"));
    let pipeline: String = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                format!("p{i} NOOP\r\n")
            } else {
                format!("p{i} CAPABILITY\r\n")
            }
        })
        .collect();
    c.send(pipeline.as_bytes());
    for i in 0..50 {
        let (_, tagged) = c.until_tagged(&format!("p{i}"));
        assert!(tagged.starts_with(&format!("p{i} OK")), "{tagged}");
    }
    assert!(limit_hits(&server, "pipelined") >= 1.0);
}

#[test]
fn repeated_bad_commands_end_the_session() {
    let spool = Spool::new();
    spool.reg_set("MaxBadCommands", "3");
    let server = spool.start();
    let mut c = server.connect();
    // A good command in between starts the count again.
    assert!(c.run("a", "XYZZY").starts_with("a BAD"));
    assert!(c.run("b", "FROB").starts_with("b BAD"));
    assert!(c.run("c", "NOOP").starts_with("c OK"));
    assert!(c.run("d", "XYZZY").starts_with("d BAD"));
    assert!(c.run("e", "XYZZY").starts_with("e BAD"));
    c.send(b"\x01\x02\r\n");
    let bad = c.line();
    assert!(bad.contains("BAD"), "{bad}");
    assert_eq!(c.line(), "* BYE Too many invalid commands");
    assert!(c.closed());
    assert_eq!(limit_hits(&server, "bad_commands"), 1.0);
    // The server goes on.
    let mut fresh = server.connect();
    assert!(fresh.run("n", "NOOP").starts_with("n OK"));
}

#[test]
fn an_address_that_keeps_failing_is_throttled_and_others_are_not() {
    let spool = Spool::new();
    spool.reg_set("AuthThrottleAfter", "2");
    spool.reg_set("AuthFailDelay", "0");
    spool.reg_set("AuthThrottleMaxDelay", "1");
    let server = spool.start();
    let mut guesser = server.connect();
    for i in 0..4 {
        let answer = guesser.run(&format!("g{i}"), "LOGIN carol wrong");
        assert!(answer.contains("NO [AUTHENTICATIONFAILED]"), "{answer}");
    }
    assert!(limit_hits(&server, "auth_throttled") >= 1.0);
    // Another address logs in without waiting its turn behind the guesser.
    let mut other = connect_from(&server, [127, 0, 0, 3]);
    assert!(login(&mut other, "l", "carol").starts_with("l OK"));
    let throttled = limit_hits(&server, "auth_throttled");
    // The guessing address still gets in with the right password (after its wait).
    assert!(login(&mut guesser, "l", "carol").starts_with("l OK"));
    assert!(limit_hits(&server, "auth_throttled") > throttled);
}

/// Whether process `pid` has exited (it stays a zombie until the test harness reaps it).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn sigterm_says_bye_to_every_session_and_exits() {
    let spool = Spool::new();
    spool.reg_set("Workers", "2");
    let server = spool.start();
    let mut idler = server.connect();
    assert!(login(&mut idler, "l", "carol").starts_with("l OK"));
    assert!(idler.run("s", "SELECT INBOX").starts_with("s OK"));
    idler.send(b"i IDLE\r\n");
    assert_eq!(idler.line(), "+ idling");
    let mut waiting = server.connect();
    assert!(login(&mut waiting, "l", "alice").starts_with("l OK"));
    let mut anonymous = server.connect();

    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    for c in [&mut idler, &mut waiting, &mut anonymous] {
        assert_eq!(c.line(), "* BYE Server shutting down");
        assert!(c.closed());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exited(server.pid()) {
        assert!(Instant::now() < deadline, "hato did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        TcpStream::connect(server.imap).is_err(),
        "stopped listening"
    );
}
