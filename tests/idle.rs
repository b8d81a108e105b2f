//! IDLE with change pushes (Broadcast), the IDLELoop check, keepalives and the inactivity
//! timeout, against the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Spool};

fn logged_in_selected(server: &common::Server) -> Client {
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    c
}

fn idle(c: &mut Client) {
    c.send(b"i IDLE\r\n");
    assert_eq!(c.line(), "+ idling");
}

/// Reads untagged lines until one satisfies `want`, or fails after `limit`.
fn expect_line(c: &mut Client, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            Instant::now() < deadline,
            "expected line did not arrive in {limit:?}"
        );
        c.set_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        );
        let line = c.line();
        if want(&line) {
            return line;
        }
    }
}

fn append(c: &mut Client, tag: &str) {
    c.send(format!("{tag} APPEND INBOX {{19+}}\r\nSubject: {tag:>2}\r\n\r\nbody\r\n").as_bytes());
    assert!(c.until_tagged(tag).1.starts_with(&format!("{tag} OK")));
}

#[test]
fn changes_reach_idle_sessions_on_every_worker_at_once() {
    let spool = Spool::new();
    spool.reg_set("Workers", "2");
    spool.reg_set("IDLELoop", "3600"); // only pushes can deliver within the test
    spool.reg_set("MaxUserIpSessions", "0"); // one user holds up to 41 sessions here
    let server = spool.start();
    let mut writer = logged_in_selected(&server);
    append(&mut writer, "a1");
    // IDLE sessions until both workers have some (the kernel spreads connections by hash).
    let mut idlers: Vec<Client> = Vec::new();
    let on = |worker: &str| {
        server
            .metric(&format!("hato_idle_sessions{{worker=\"{worker}\"}}"))
            .unwrap_or(0.0)
    };
    while idlers.len() < 40 && (idlers.len() < 4 || on("0") == 0.0 || on("1") == 0.0) {
        let mut c = logged_in_selected(&server);
        idle(&mut c);
        idlers.push(c);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        on("0") > 0.0 && on("1") > 0.0,
        "IDLE sessions on both workers"
    );
    append(&mut writer, "a2");
    for c in &mut idlers {
        expect_line(c, Duration::from_secs(5), |l| l == "* 2 EXISTS");
    }
    assert!(
        writer
            .run("f", "STORE 1 +FLAGS.SILENT (\\Flagged)")
            .starts_with("f OK")
    );
    for c in &mut idlers {
        expect_line(c, Duration::from_secs(5), |l| {
            l.starts_with("* 1 FETCH (FLAGS (\\Flagged")
        });
    }
    assert!(
        writer
            .run("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            .starts_with("d OK")
    );
    assert!(writer.run("e", "EXPUNGE").starts_with("e OK"));
    for c in &mut idlers {
        expect_line(c, Duration::from_secs(5), |l| l == "* 1 EXPUNGE");
        c.send(b"DONE\r\n");
        expect_line(c, Duration::from_secs(5), |l| l == "i OK IDLE terminated");
    }
    let pushed = server.metric("hato_broadcast_events_total").unwrap_or(0.0);
    assert!(pushed >= 3.0, "broadcast events: {pushed}");
    // Every push was timed, from the change to the write (3 changes for each session).
    let timed = server
        .metric("hato_notify_latency_seconds_count")
        .unwrap_or(0.0);
    assert!(
        timed >= 3.0 * idlers.len() as f64,
        "notify latency samples: {timed}"
    );
}

#[test]
fn without_broadcast_idle_learns_at_the_idleloop_tick() {
    let spool = Spool::new();
    spool.reg_set("Broadcast", "0");
    spool.reg_set("IDLELoop", "2");
    let server = spool.start();
    let mut writer = logged_in_selected(&server);
    let mut idler = logged_in_selected(&server);
    idle(&mut idler);
    append(&mut writer, "a1");
    // Not pushed: only the next IDLELoop check (at most 2 s, plus the 1 s sweep) tells it.
    idler.set_timeout(Duration::from_millis(300));
    let mut early = Vec::new();
    let mut buf = String::new();
    while let Ok(n) = std::io::BufRead::read_line(idler.reader(), &mut buf) {
        if n == 0 {
            break;
        }
        early.push(std::mem::take(&mut buf));
    }
    let seen_early = early.iter().any(|l| l.starts_with("* 1 EXISTS"));
    expect_line(&mut idler, Duration::from_secs(6), |l| l == "* 1 EXISTS");
    assert!(
        !seen_early || early.is_empty(),
        "pushed at once with Broadcast=0: {early:?}"
    );
    assert!(server.metric("hato_idle_checks_total").unwrap_or(0.0) >= 1.0);
}

#[test]
fn a_message_dropped_into_new_is_seen_within_idleloop() {
    let spool = Spool::new();
    spool.reg_set("IDLELoop", "1");
    let server = spool.start();
    let mut idler = logged_in_selected(&server);
    idle(&mut idler);
    let file = spool.path().join("mail/carol/new/1700000000.M9P9.external");
    std::fs::write(&file, "Subject: external\r\n\r\nhi\r\n").expect("drop a message");
    expect_line(&mut idler, Duration::from_secs(6), |l| l == "* 1 EXISTS");
}

#[test]
fn keepalive_during_idle() {
    let spool = Spool::new();
    spool.reg_set("IdleKeepalive", "1");
    let server = spool.start();
    let mut idler = server.connect();
    assert!(idler.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    idle(&mut idler); // IDLE in the authenticated state, as some Outlook builds do
    expect_line(&mut idler, Duration::from_secs(5), |l| {
        l == "* OK Still here"
    });
    idler.send(b"DONE\r\n");
    expect_line(&mut idler, Duration::from_secs(5), |l| {
        l == "i OK IDLE terminated"
    });
}

#[test]
fn silent_sessions_are_closed_active_ones_stay() {
    let spool = Spool::new();
    spool.reg_set("IdleTimeoutSeconds", "2");
    let server = spool.start();
    let mut silent = server.connect();
    assert!(silent.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    idle(&mut silent);
    let mut active = server.connect();
    assert!(active.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    // The active client keeps talking for 5 s (well past the 2 s timeout) on its own thread.
    let talker = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            assert_eq!(active.run("n", "NOOP"), "n OK NOOP completed");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let bye = expect_line(&mut silent, Duration::from_secs(8), |l| {
        l.starts_with("* BYE")
    });
    assert_eq!(bye, "* BYE Disconnected for inactivity");
    assert!(silent.closed());
    talker.join().expect("the active session stayed open");
    assert!(
        server
            .metric("hato_sessions_closed_total{reason=\"timeout\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn idlecmd_0_refuses_idle_in_the_selected_state_too() {
    let spool = Spool::new();
    spool.reg_set("IDLECmd", "0");
    let server = spool.start();
    let mut c = logged_in_selected(&server);
    assert_eq!(c.run("i", "IDLE"), "i BAD IDLE is disabled on this server");
}

#[test]
fn an_lmtp_delivery_wakes_an_idle_session() {
    let spool = Spool::new();
    let lmtp = format!("127.0.0.1:{}", common::free_port());
    spool.reg_set("LmtpListen", &lmtp);
    let server = spool.start();
    let mut idler = logged_in_selected(&server);
    idle(&mut idler);
    let stream = std::net::TcpStream::connect(&lmtp).expect("connect to LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut reply = |expect: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).expect("LMTP reply");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert!(
            line.starts_with(expect),
            "LMTP said {line:?}, expected {expect}"
        );
    };
    use std::io::Write;
    reply("220");
    for (command, expect) in [
        ("LHLO test\r\n", "250"),
        ("MAIL FROM:<a@example.com>\r\n", "250"),
        ("RCPT TO:<carol@example.com>\r\n", "250"),
        ("DATA\r\n", "354"),
        ("Subject: via lmtp\r\n\r\nhello\r\n.\r\n", "250"),
    ] {
        writer.write_all(command.as_bytes()).expect("send");
        reply(expect);
    }
    expect_line(&mut idler, Duration::from_secs(5), |l| l == "* 1 EXISTS");
}

#[test]
fn an_outside_writer_is_seen_through_inotify_before_idleloop() {
    let spool = Spool::new();
    spool.reg_set("IDLELoop", "3600"); // only the folder watch can deliver within the test
    let server = spool.start();
    let mut idler = logged_in_selected(&server);
    idle(&mut idler);
    // The folder is watched once the session is registered in IDLE (the gauge is set then).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric_sum("hato_idle_sessions", &[]) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "IDLE never registered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Like an MDA: written in tmp/, then renamed into new/.
    let maildir = spool.path().join("mail/carol");
    let temp = maildir.join("tmp/1700000001.M1P1.mda");
    std::fs::write(&temp, "Subject: via an MDA\r\n\r\nhi\r\n").expect("write in tmp/");
    std::fs::rename(&temp, maildir.join("new/1700000001.M1P1.mda")).expect("rename into new/");
    expect_line(&mut idler, Duration::from_secs(3), |l| l == "* 1 EXISTS");
    assert!(server.metric("hato_folder_events_total").unwrap_or(0.0) >= 1.0);
}
