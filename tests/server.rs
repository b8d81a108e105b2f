//! End-to-end tests of the server core against the real binary on 127.0.0.1.

mod common;

use common::{Client, Spool};

#[test]
fn imaplib_logs_in_with_each_password_scheme() {
    let spool = Spool::new();
    let server = spool.start();
    let out = server.python("login_schemes.py", &[]);
    assert!(out.contains("all logins checked"), "{out}");
    let ok = server.metric("hato_logins_total{result=\"success\"}");
    let failed = server.metric("hato_logins_total{result=\"failure\"}");
    assert_eq!(
        ok,
        Some(9.0),
        "3 users x (LOGIN, AUTHENTICATE, LOGIN after failure)"
    );
    assert_eq!(
        failed,
        Some(5.0),
        "3 wrong passwords, 1 unknown user, 1 AUTHENTICATE"
    );
}

#[test]
fn wrong_password_is_refused_and_the_session_goes_on() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert_eq!(
        c.run("a1", "LOGIN carol wrong"),
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    assert_eq!(
        c.run("a2", "LOGIN nobody wrong"),
        "a2 NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let answer = c.run("a3", "LOGIN carol carol-pw");
    assert!(answer.starts_with("a3 OK [CAPABILITY "), "{answer}");
    assert_eq!(
        c.run("a4", "LOGIN carol carol-pw"),
        "a4 BAD Already logged in"
    );
}

fn capability_line(c: &mut Client) -> String {
    c.send(b"c CAPABILITY\r\n");
    let (untagged, tagged) = c.until_tagged("c");
    assert_eq!(tagged, "c OK CAPABILITY completed");
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    untagged[0].clone()
}

#[test]
fn capability_lists_idle_only_when_idlecmd_is_1() {
    let spool = Spool::new();
    {
        let server = spool.start();
        let mut c = server.connect();
        let caps = capability_line(&mut c);
        assert!(caps.split(' ').any(|a| a == "IDLE"), "{caps}");
        assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
        let caps = capability_line(&mut c);
        assert!(caps.split(' ').any(|a| a == "IDLE"), "{caps}");
        c.send(b"i IDLE\r\n");
        assert_eq!(c.line(), "+ idling");
        c.send(b"DONE\r\n");
        assert_eq!(c.line(), "i OK IDLE terminated");
    }
    spool.reg_set("IDLECmd", "0");
    let server = spool.start();
    let greeting_server = server.connect();
    drop(greeting_server);
    let mut c = server.connect();
    let caps = capability_line(&mut c);
    assert!(!caps.contains("IDLE"), "{caps}");
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    let caps = capability_line(&mut c);
    assert!(!caps.contains("IDLE"), "{caps}");
    assert_eq!(c.run("i", "IDLE"), "i BAD IDLE is disabled on this server");
    assert_eq!(c.run("n", "NOOP"), "n OK NOOP completed");
}

#[test]
fn greeting_carries_capabilities() {
    let spool = Spool::new();
    let server = spool.start();
    let stream = std::net::TcpStream::connect(server.imap).expect("connect");
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).expect("greeting");
    assert!(
        line.starts_with("* OK [CAPABILITY IMAP4rev1 ")
            && line.contains(" IDLE")
            && line.ends_with("\r\n"),
        "{line:?}"
    );
}

#[test]
fn malformed_input_gets_bad_and_the_connection_goes_on() {
    let spool = Spool::new();
    spool.reg_set("MaxLineLength", "4096");
    spool.reg_set("MaxLiteralSize", "1024");
    let server = spool.start();
    let mut c = server.connect();

    // Garbage without a usable tag.
    c.send(b"\x01\x02garbage\xff\r\n");
    assert!(c.line().starts_with("* BAD"));
    assert_eq!(c.run("n1", "NOOP"), "n1 OK NOOP completed");

    // Unknown command and a missing command name.
    assert_eq!(c.run("u1", "FROBNICATE"), "u1 BAD Unknown command");
    c.send(b"lonely\r\n");
    assert_eq!(c.line(), "lonely BAD Missing command name");

    // Unbalanced quotes.
    assert!(c.run("q1", "LOGIN \"carol carol-pw").starts_with("q1 BAD"));
    assert!(c.run("q2", "ID (\"name\" \"x\"").starts_with("q2 BAD"));
    assert_eq!(c.run("n2", "NOOP"), "n2 OK NOOP completed");

    // NUL bytes.
    c.send(b"z1 NO\0OP\r\n");
    assert!(c.line().starts_with("z1 BAD NUL"));
    c.send(b"\0\0\0\r\n");
    assert!(c.line().starts_with("* BAD"));
    assert_eq!(c.run("n3", "NOOP"), "n3 OK NOOP completed");

    // An overlong line, sent in pieces: refused once, the rest discarded.
    let mut long = b"o1 LOGIN ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 10_000));
    c.send(&long[..3000]);
    c.send(&long[3000..]);
    c.send(b"\r\n");
    assert_eq!(c.line(), "o1 BAD Line too long (limit 4096 bytes)");
    assert_eq!(c.run("n4", "NOOP"), "n4 OK NOOP completed");

    // An oversized synchronizing literal is refused without a continuation.
    c.send(b"l1 LOGIN {5000}\r\n");
    assert_eq!(c.line(), "l1 NO [TOOBIG] Literal too big");
    assert_eq!(c.run("n5", "NOOP"), "n5 OK NOOP completed");

    // An oversized non-synchronizing literal is swallowed, then the next command runs.
    let mut big = b"l2 LOGIN {3000+}\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'y', 3000));
    big.extend_from_slice(b" pw\r\nn6 NOOP\r\n");
    c.send(&big);
    assert_eq!(c.line(), "l2 NO [TOOBIG] Literal too big");
    assert_eq!(c.line(), "n6 OK NOOP completed");

    // A literal whose announced length does not match what follows on the line.
    assert!(c.run("b1", "LOGIN {x}").starts_with("b1 BAD"));
    // Then a valid login still works on the same connection.
    assert!(c.run("ok", "LOGIN carol carol-pw").starts_with("ok OK"));
    assert_eq!(c.run("n7", "NOOP"), "n7 OK NOOP completed");
}

#[test]
fn literals_sasl_ir_and_pipelining() {
    let spool = Spool::new();
    let server = spool.start();

    // Synchronizing literals: the server answers `+` before each.
    let mut c = server.connect();
    c.send(b"a LOGIN {5}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send(b"carol {8}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send(b"carol-pw\r\n");
    assert!(c.until_tagged("a").1.starts_with("a OK"));

    // LITERAL+ and commands pipelined behind the login.
    let mut c = server.connect();
    c.send(b"a LOGIN {5+}\r\ncarol {8+}\r\ncarol-pw\r\nb NOOP\r\nc LOGOUT\r\n");
    assert!(c.until_tagged("a").1.starts_with("a OK"));
    assert_eq!(c.until_tagged("b").1, "b OK NOOP completed");
    let (untagged, tagged) = c.until_tagged("c");
    assert_eq!(untagged, vec!["* BYE Logging out".to_string()]);
    assert_eq!(tagged, "c OK LOGOUT completed");
    assert!(c.closed());

    // AUTHENTICATE PLAIN with SASL-IR: base64("\0carol\0carol-pw").
    let mut c = server.connect();
    let ok = c.run("s", "AUTHENTICATE PLAIN AGNhcm9sAGNhcm9sLXB3");
    assert!(ok.starts_with("s OK"), "{ok}");

    // AUTHENTICATE LOGIN with prompts, and a cancelled exchange.
    let mut c = server.connect();
    c.send(b"x AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.line(), "+ VXNlcm5hbWU6");
    c.send(b"*\r\n");
    assert_eq!(c.line(), "x BAD AUTHENTICATE cancelled");
    c.send(b"y AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.line(), "+ VXNlcm5hbWU6");
    c.send(b"Y2Fyb2w=\r\n");
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6");
    c.send(b"Y2Fyb2wtcHc=\r\n");
    assert!(c.line().starts_with("y OK"));
    assert_eq!(c.run("z", "AUTHENTICATE PLAIN"), "z BAD Already logged in");

    // Invalid base64 and an unknown mechanism.
    let mut c = server.connect();
    assert_eq!(
        c.run("p", "AUTHENTICATE PLAIN !!!"),
        "p BAD Invalid base64 in SASL response"
    );
    assert_eq!(
        c.run("q", "AUTHENTICATE CRAM-MD5"),
        "q NO Unsupported authentication mechanism"
    );
}

#[test]
fn state_rules_id_enable_and_unknown_commands() {
    let spool = Spool::new();
    let server = spool.start();
    let mut c = server.connect();
    assert_eq!(c.run("a", "SELECT INBOX"), "a BAD Log in first");
    assert_eq!(c.run("b", "IDLE"), "b BAD Log in first");
    c.send(b"i ID (\"name\" \"test\" \"version\" \"1\")\r\n");
    let (untagged, tagged) = c.until_tagged("i");
    assert_eq!(tagged, "i OK ID completed");
    assert!(untagged[0].starts_with("* ID (\"name\" \"hato\" \"version\" \""));
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c.send(b"e ENABLE CONDSTORE\r\n");
    let (untagged, tagged) = c.until_tagged("e");
    assert_eq!(
        (untagged, tagged.as_str()),
        (
            vec!["* ENABLED CONDSTORE".to_string()],
            "e OK ENABLE completed"
        )
    );
    // A command this server does not know at all.
    assert_eq!(
        c.run("s", "SETQUOTA \"\" (STORAGE 10)"),
        "s BAD Unknown command"
    );
    // IDLE in the authenticated state (Outlook sends it before SELECT); a wrong line ends it.
    c.send(b"d IDLE\r\n");
    assert_eq!(c.line(), "+ idling");
    c.send(b"NOPE\r\n");
    assert_eq!(c.line(), "d BAD Expected DONE");
    assert_eq!(c.run("n", "NOOP"), "n OK NOOP completed");
}

#[test]
fn sessions_land_on_several_workers() {
    let spool = Spool::new();
    spool.reg_set("Workers", "2");
    let server = spool.start();
    let mut clients: Vec<Client> = (0..40).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.run(&format!("t{i}"), "NOOP"),
            format!("t{i} OK NOOP completed")
        );
    }
    let w0 = server.metric("hato_sessions{worker=\"0\"}").unwrap_or(0.0);
    let w1 = server.metric("hato_sessions{worker=\"1\"}").unwrap_or(0.0);
    assert_eq!(w0 + w1, 40.0, "every session is counted on its worker");
    assert!(
        w0 > 0.0 && w1 > 0.0,
        "sessions on both workers: {w0} / {w1}"
    );
    assert_eq!(server.metric("hato_workers"), Some(2.0));
    drop(clients);
}

#[test]
fn abrupt_disconnects_do_not_hurt_the_server() {
    let spool = Spool::new();
    let server = spool.start();
    for i in 0..20 {
        let mut c = server.connect();
        // Half a command, a pending literal, or nothing at all, then gone.
        match i % 3 {
            0 => c.send(b"a LOG"),
            1 => c.send(b"a LOGIN {100}\r\n"),
            _ => {}
        }
        drop(c);
    }
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    for _ in 0..50 {
        if server.metric("hato_sessions{worker=\"0\"}").unwrap_or(0.0)
            + server.metric("hato_sessions{worker=\"1\"}").unwrap_or(0.0)
            == 1.0
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("closed sessions were not released:\n{}", server.scrape());
}
