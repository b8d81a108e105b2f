//! Hostile input against the real binary: every case runs on a fresh connection and must be
//! answered with a tagged or untagged `BAD`/`NO` (the exact answer where one is specified), or a
//! clean close; never a hang (every read has a timeout) and never a crash. After each case the
//! server must still greet new connections on every worker, and at the end a fresh client logs
//! in, selects INBOX and fetches the one message put there before, unchanged. Nothing may be
//! created in the spool outside the user's mail directory.
//!
//! Cases that currently break the server are separate tests marked `#[ignore = "bug: ..."]`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Server, Spool};

/// `MaxLineLength.1` default (src/config/registry.rs).
const MAX_LINE: usize = 65_536;
/// `MaxLiteralSize.1` default.
const MAX_LITERAL: u64 = 52_428_800;
/// How long any answer may take before the server counts as hung.
const WAIT: Duration = Duration::from_secs(5);
/// Workers the server runs, so that liveness probes reach each of them.
const WORKERS: usize = 2;
/// Marker in every path-traversal name, looked for outside the mail directory afterwards.
const ESCAPE: &str = "hatoescape";
/// The message put in INBOX before the hostile cases; it must come back unchanged.
const CANARY: &[u8] = b"Message-ID: <canary@hostile.test>\r\nSubject: canary\r\n\r\nstill here\r\n";

fn start(spool: &Spool) -> Server {
    Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"])
}

/// A raw connection for one case: sends bytes, reads answers with a deadline.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    case: String,
}

/// What a read gave.
enum Reply {
    Line(String),
    Eof,
    Timeout,
}

impl Conn {
    fn open(addr: SocketAddr, case: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        // A server that stops reading must not block the test either.
        stream.set_write_timeout(Some(WAIT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut conn = Conn {
            stream,
            reader,
            case: case.to_string(),
        };
        let greeting = conn.line();
        assert!(greeting.starts_with("* OK "), "{case}: greeting {greeting}");
        conn
    }

    fn logged_in(addr: SocketAddr, case: &str) -> Conn {
        let mut conn = Conn::open(addr, case);
        conn.ok("L", "LOGIN carol carol-pw");
        conn
    }

    fn selected(addr: SocketAddr, case: &str) -> Conn {
        let mut conn = Conn::logged_in(addr, case);
        conn.ok("S", "SELECT INBOX");
        conn
    }

    /// Writes bytes; a server that already closed the connection is not an error here.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn read(&mut self) -> Reply {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => Reply::Eof,
            Ok(_) => Reply::Line(
                String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Reply::Timeout
            }
            // A reset is a close too.
            Err(_) => Reply::Eof,
        }
    }

    /// One line; fails the case when none comes in time.
    fn line(&mut self) -> String {
        match self.read() {
            Reply::Line(line) => line,
            Reply::Eof => "EOF".to_string(),
            Reply::Timeout => panic!("{}: no answer within {WAIT:?} (hang)", self.case),
        }
    }

    /// Reads until the answer to `tag`: its tagged line, an untagged `BAD`/`NO`/`BYE`, or
    /// `EOF`. Other untagged lines (data, continuations) are skipped.
    fn answer(&mut self, tag: &str) -> String {
        let prefix = format!("{tag} ");
        loop {
            let line = self.line();
            if line == "EOF"
                || line.starts_with(&prefix)
                || ["* BAD", "* NO", "* BYE"]
                    .iter()
                    .any(|p| line.starts_with(p))
            {
                return line;
            }
        }
    }

    fn run(&mut self, tag: &str, command: &[u8]) -> String {
        let mut bytes = format!("{tag} ").into_bytes();
        bytes.extend_from_slice(command);
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes);
        self.answer(tag)
    }

    fn ok(&mut self, tag: &str, command: &str) -> String {
        let answer = self.run(tag, command.as_bytes());
        assert!(
            answer.starts_with(&format!("{tag} OK")),
            "{}: {command:?} -> {answer}",
            self.case
        );
        answer
    }

    /// `command` gets a tagged answer starting with `expected` (e.g. `BAD`, `NO [CANNOT]`),
    /// and the session goes on.
    fn expect(&mut self, tag: &str, command: &[u8], expected: &str) {
        let answer = self.run(tag, command);
        assert!(
            answer.starts_with(&format!("{tag} {expected}")),
            "{}: {:?} -> {answer} (expected {tag} {expected})",
            self.case,
            String::from_utf8_lossy(&command[..command.len().min(120)])
        );
        self.resynced();
    }

    /// Reads the answer to input whose tag may not be readable, and checks it is a refusal.
    fn refused(&mut self, tag: &str) -> String {
        let answer = self.answer(tag);
        let ok = answer == "EOF"
            || [
                format!("{tag} BAD"),
                format!("{tag} NO"),
                "* BAD".into(),
                "* NO".into(),
                "* BYE".into(),
            ]
            .iter()
            .any(|p| answer.starts_with(p.as_str()));
        assert!(ok, "{}: not refused: {answer}", self.case);
        answer
    }

    /// The next line is an untagged `BAD`.
    fn untagged_bad(&mut self) {
        let line = self.line();
        assert!(line.starts_with("* BAD "), "{}: {line}", self.case);
    }

    /// A NOOP right after still works: the session resynchronised on the next command.
    fn resynced(&mut self) {
        let answer = self.run("zz", b"NOOP");
        assert_eq!(
            answer, "zz OK NOOP completed",
            "{}: after the case",
            self.case
        );
    }

    /// Nothing arrives within `limit` (the server is waiting for the rest of a command).
    fn quiet_for(&mut self, limit: Duration) {
        self.stream.set_read_timeout(Some(limit)).expect("timeout");
        match self.read() {
            Reply::Timeout => {}
            Reply::Line(line) => panic!("{}: unexpected answer {line}", self.case),
            Reply::Eof => panic!("{}: unexpected close", self.case),
        }
        self.stream.set_read_timeout(Some(WAIT)).expect("timeout");
    }
}

/// The server process is running (not gone, not a zombie) and every worker greets: several
/// connections at once (spread over the workers by the kernel) each get `* OK` and answer NOOP.
fn assert_alive(server: &Server, case: &str) {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))
        .unwrap_or_else(|e| panic!("{case}: server process gone: {e}"));
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    assert!(
        !state.starts_with('Z') && !state.starts_with('X'),
        "{case}: server died (state {state})"
    );
    let mut conns: Vec<TcpStream> = (0..4 * WORKERS)
        .map(|_| TcpStream::connect(server.imap).expect("connect"))
        .collect();
    for (i, stream) in conns.iter_mut().enumerate() {
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut greeting = String::new();
        let _ = reader.read_line(&mut greeting);
        assert!(
            greeting.starts_with("* OK "),
            "{case}: connection {i} after the case got no greeting ({greeting:?}): a worker is stuck"
        );
        stream.write_all(b"p NOOP\r\n").expect("send");
        let mut answer = String::new();
        let _ = reader.read_line(&mut answer);
        assert_eq!(answer, "p OK NOOP completed\r\n", "{case}: probe {i}");
    }
}

/// Runs one case on a fresh connection, then checks the server is alive.
fn case(server: &Server, name: &str, login: Login, body: impl FnOnce(&mut Conn)) {
    let mut conn = match login {
        Login::No => Conn::open(server.imap, name),
        Login::Yes => Conn::logged_in(server.imap, name),
        Login::Selected => Conn::selected(server.imap, name),
    };
    body(&mut conn);
    drop(conn);
    assert_alive(server, name);
}

#[derive(Clone, Copy)]
enum Login {
    No,
    Yes,
    Selected,
}

/// Every path under `root` (relative), not following symbolic links.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    out
}

/// A TLS 1.2 ClientHello record, as a TLS client sends it first on connecting. `random` is
/// the 32-byte client random (chosen by the caller, with or without an LF byte).
fn client_hello(random: [u8; 32]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&random);
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&[0x00, 0x00]); // no extensions
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).expect("short")];
    handshake.extend_from_slice(&body);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        0x00,
        u8::try_from(handshake.len()).expect("short"),
    ];
    record.extend_from_slice(&handshake);
    record
}

/// An APPEND command with a LITERAL+ message.
fn append_command(mailbox: &str, flags: &str, message: &[u8]) -> Vec<u8> {
    let mut command = format!("APPEND {mailbox} {flags}{{{}+}}\r\n", message.len()).into_bytes();
    command.extend_from_slice(message);
    command
}

#[test]
fn hostile_input_is_refused_and_the_server_survives() {
    let spool = Spool::new();
    spool.reg_set("Workers", &WORKERS.to_string());
    let server = start(&spool);
    let addr = server.imap;

    // The user's mail directory exists and holds one message.
    let mut setup = Conn::logged_in(addr, "setup");
    let answer = setup.run("a", &append_command("INBOX", "", CANARY));
    assert!(answer.starts_with("a OK [APPENDUID "), "setup: {answer}");
    drop(setup);
    let mail_dir = PathBuf::from("mail").join("carol");
    let before = tree(spool.path());
    assert!(before.contains(&mail_dir.join("cur")) || before.contains(&mail_dir.join("new")));
    let passwd_before = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));

    // ----- line and literal limits -----

    case(
        &server,
        "line one byte over MaxLineLength",
        Login::No,
        |c| {
            // CRLF included, the line is MAX_LINE + 1 bytes, sent in one write.
            let mut line = b"o1 NOOP ".to_vec();
            line.resize(MAX_LINE - 1, b'x');
            line.extend_from_slice(b"\r\n");
            assert_eq!(line.len(), MAX_LINE + 1);
            c.send(&line);
            assert_eq!(
                c.line(),
                format!("o1 BAD Line too long (limit {MAX_LINE} bytes)")
            );
            c.resynced();
        },
    );
    case(&server, "line at MaxLineLength exactly", Login::No, |c| {
        let mut line = b"o2 NOOP ".to_vec();
        line.resize(MAX_LINE - 2, b'x');
        line.extend_from_slice(b"\r\n");
        c.send(&line);
        // Within the limit: answered for what it says, not for its length.
        let answer = c.line();
        assert!(answer.starts_with("o2 "), "{answer}");
        assert!(!answer.contains("too long"), "{answer}");
        c.resynced();
    });
    case(&server, "overlong tag", Login::No, |c| {
        // One byte over the limit, so that the framer sees the line end whatever the reads.
        let mut line = vec![b't'; MAX_LINE - 6];
        line.extend_from_slice(b" NOOP\r\n");
        assert_eq!(line.len(), MAX_LINE + 1);
        c.send(&line);
        let answer = c.line();
        assert!(
            answer.ends_with(&format!(" BAD Line too long (limit {MAX_LINE} bytes)")),
            "{}",
            &answer[answer.len().saturating_sub(80)..]
        );
        c.resynced();
    });
    for (what, spec) in [
        ("4 GiB", "{4294967296}".to_string()),
        ("u64::MAX", "{18446744073709551615}".to_string()),
        ("MaxLiteralSize + 1", format!("{{{}}}", MAX_LITERAL + 1)),
    ] {
        case(
            &server,
            &format!("{what} synchronizing literal at LOGIN"),
            Login::No,
            |c| {
                c.send(format!("l1 LOGIN {spec}\r\n").as_bytes());
                // Refused at once, without a continuation request.
                assert_eq!(c.line(), "l1 NO [TOOBIG] Literal too big");
                c.resynced();
            },
        );
        case(
            &server,
            &format!("{what} synchronizing literal at APPEND"),
            Login::Yes,
            |c| {
                c.send(format!("a1 APPEND INBOX (\\Seen) {spec}\r\n").as_bytes());
                assert_eq!(c.line(), "a1 NO [TOOBIG] Literal too big");
                c.resynced();
            },
        );
    }
    for spec in [
        "{99999999999999999999}",
        "{99999999999999999999+}",
        "{18446744073709551616}",
    ] {
        case(
            &server,
            &format!("overflowing literal {spec}"),
            Login::No,
            |c| {
                // Not a literal the framer can size: the line is a command, and a bad one.
                c.expect(
                    "l2",
                    format!("LOGIN {spec}").as_bytes(),
                    "BAD Invalid literal",
                );
            },
        );
        case(
            &server,
            &format!("overflowing literal {spec} at APPEND"),
            Login::Yes,
            |c| {
                c.expect("a2", format!("APPEND INBOX {spec}").as_bytes(), "BAD");
            },
        );
    }
    for spec in ["{}", "{-1}", "{1 }", "{+}", "{0x10}", "{ 5}"] {
        case(
            &server,
            &format!("malformed literal {spec}"),
            Login::No,
            |c| {
                c.expect("l3", format!("LOGIN carol {spec}").as_bytes(), "BAD");
            },
        );
    }

    // ----- half-sent commands, then gone -----

    for i in 0..12 {
        case(
            &server,
            &format!("half-sent literal #{i}"),
            Login::Yes,
            |c| match i % 4 {
                0 => {
                    c.send(b"h1 APPEND INBOX {100}\r\n");
                    assert!(c.line().starts_with("+ "));
                    c.send(&[b'y'; 50]);
                }
                1 => {
                    c.send(b"h2 APPEND INBOX (\\Seen) {100+}\r\n");
                    c.send(&[b'y'; 50]);
                }
                2 => {
                    c.send(b"h3 LOGIN {5}\r\n");
                    let _ = c.line();
                    c.send(b"car");
                }
                _ => c.send(b"h4 APPEND INBOX {100+}\r\nSubject: half\r\n\r\n"),
            },
        );
    }
    case(&server, "half-sent literal before login", Login::No, |c| {
        c.send(b"h5 LOGIN {5}\r\n");
        assert!(c.line().starts_with("+ "));
        c.send(b"ca");
    });

    // ----- unbalanced parentheses -----

    for (tag, command) in [
        ("f1", "FETCH 1 (FLAGS"),
        ("f2", "FETCH 1 FLAGS)"),
        ("f3", "FETCH 1 ((FLAGS)"),
        ("f4", "FETCH 1 (FLAGS))"),
        ("f5", "FETCH 1 (FLAGS UID"),
        ("f6", "FETCH 1 BODY[HEADER.FIELDS (FROM]"),
        ("f7", "FETCH 1 BODY[HEADER.FIELDS FROM)]"),
        ("f8", "UID FETCH 1 (UID (FLAGS)"),
        ("s1", "SEARCH (SEEN"),
        ("s2", "SEARCH SEEN)"),
        ("s3", "SEARCH ((SEEN)"),
        ("s4", "SEARCH OR (SEEN ALL"),
        ("s5", "SEARCH RETURN (MIN ALL"),
        ("s6", "UID SEARCH NOT (ALL"),
        ("t1", "STORE 1 +FLAGS (\\Seen"),
        ("t2", "STORE 1 FLAGS \\Seen)"),
    ] {
        case(&server, command, Login::Selected, |c| {
            c.expect(tag, command.as_bytes(), "BAD");
        });
    }
    case(&server, "SEARCH nested 1000 deep", Login::Selected, |c| {
        let deep = format!("SEARCH {}ALL{}", "(".repeat(1000), ")".repeat(1000));
        c.expect("s7", deep.as_bytes(), "BAD");
        let nots = format!("SEARCH {}ALL", "NOT ".repeat(10_000));
        c.expect("s8", nots.as_bytes(), "BAD");
    });
    for (tag, flags) in [
        ("p1", "(\\Seen "),
        ("p2", "\\Seen) "),
        ("p3", "((\\Seen) "),
        ("p4", "(\\Seen)) "),
        ("p5", "( "),
    ] {
        case(
            &server,
            &format!("APPEND flags {flags:?}"),
            Login::Yes,
            |c| {
                c.expect(
                    tag,
                    &append_command("INBOX", flags, b"Subject: x\r\n\r\nx\r\n"),
                    "BAD",
                );
            },
        );
    }
    case(
        &server,
        "APPEND unbalanced flags, synchronizing literal",
        Login::Yes,
        |c| {
            c.send(b"p6 APPEND INBOX (\\Seen {3}\r\n");
            assert!(c.line().starts_with("+ "));
            c.send(b"abc\r\n");
            assert!(c.answer("p6").starts_with("p6 BAD"));
            c.resynced();
        },
    );

    // ----- NUL bytes, bare line ends, 8-bit garbage, tags -----

    case(&server, "NUL in the command name", Login::No, |c| {
        c.expect(
            "z1",
            b"NO\0OP",
            "BAD NUL bytes are not allowed outside literals",
        );
    });
    case(&server, "NUL in a quoted string", Login::No, |c| {
        c.expect("z2", b"LOGIN carol \"carol\0-pw\"", "BAD");
    });
    case(&server, "NUL after a literal", Login::No, |c| {
        c.expect("z3", b"LOGIN {5+}\r\ncarol \"x\0y\"", "BAD");
    });
    case(&server, "NUL in a literal mailbox name", Login::Yes, |c| {
        c.expect("z4", b"SELECT {5+}\r\nIN\0OX", "BAD");
        c.expect("z5", b"CREATE {4+}\r\na\0/b", "BAD");
    });
    case(&server, "NUL in the tag", Login::No, |c| {
        c.send(b"a\0b NOOP\r\n");
        c.untagged_bad();
        c.send(b"\0\0\0\r\n");
        c.untagged_bad();
        c.resynced();
    });
    case(&server, "bare LF line ends", Login::No, |c| {
        // Tolerated, as many clients and scripts send them.
        c.send(b"b1 NOOP\n");
        assert_eq!(c.line(), "b1 OK NOOP completed");
        c.send(b"\n");
        assert_eq!(c.line(), "* BAD Empty command line");
        c.send(b"b2 NO\rOP\r\n");
        assert!(c.line().starts_with("b2 BAD "));
        c.resynced();
    });
    case(&server, "empty commands", Login::No, |c| {
        c.send(b"\r\n");
        assert_eq!(c.line(), "* BAD Empty command line");
        c.send(b" \r\n");
        c.untagged_bad();
        c.send(b"   NOOP\r\n");
        c.untagged_bad();
        c.send(b"e1\r\n");
        assert_eq!(c.line(), "e1 BAD Missing command name");
        c.send(b"e2 \r\n");
        assert!(c.line().starts_with("e2 BAD "));
        c.resynced();
    });
    case(&server, "* and + as tags", Login::No, |c| {
        c.send(b"* NOOP\r\n");
        assert_eq!(c.line(), "* BAD Invalid tag");
        c.send(b"+ NOOP\r\n");
        c.untagged_bad();
        c.send(b"a+b NOOP\r\n");
        c.untagged_bad();
        c.send(b"* LOGIN carol carol-pw\r\n");
        c.untagged_bad();
        // That LOGIN did not log in.
        assert_eq!(c.run("s", b"SELECT INBOX"), "s BAD Log in first");
        c.resynced();
    });
    case(&server, "very long tags", Login::No, |c| {
        let tag = "T".repeat(MAX_LINE - 100);
        assert_eq!(c.run(&tag, b"NOOP"), format!("{tag} OK NOOP completed"));
        c.resynced();
    });
    case(
        &server,
        "long tags through slow work and IDLE",
        Login::Yes,
        |c| {
            let tag = "W".repeat(5000);
            assert!(
                c.run(&tag, b"SELECT INBOX")
                    .starts_with(&format!("{tag} OK [READ-WRITE]"))
            );
            c.send(format!("{tag} IDLE\r\n").as_bytes());
            assert_eq!(c.line(), "+ idling");
            c.send(b"DONE\r\n");
            assert_eq!(c.answer(&tag), format!("{tag} OK IDLE terminated"));
            // An overlong line during IDLE ends it with the IDLE command's tag.
            c.send(format!("{tag} IDLE\r\n").as_bytes());
            assert_eq!(c.line(), "+ idling");
            let mut line = vec![b'D'; MAX_LINE - 1];
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            assert_eq!(
                c.line(),
                format!("{tag} BAD Line too long (limit {MAX_LINE} bytes)")
            );
            c.resynced();
        },
    );
    case(&server, "8-bit garbage", Login::No, |c| {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..8 {
            let mut line: Vec<u8> = (0..200)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    0x80 | (state as u8)
                })
                .collect();
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            assert_eq!(c.line(), "* BAD Invalid tag");
        }
        c.expect("g1", b"\xc3\xa9\xff\xfe", "BAD");
        c.expect("g2", b"CAPABILITY \xff\xfe \x80", "BAD");
        c.resynced();
    });
    case(&server, "8-bit mailbox names", Login::Yes, |c| {
        c.expect("g3", b"SELECT caf\xc3\xa9", "BAD Invalid mailbox name");
        c.expect("g4", b"CREATE \"\xff\xfe\"", "BAD Invalid mailbox name");
        c.expect("g5", b"CREATE {2+}\r\n\xc3\xa9", "BAD Invalid mailbox name");
    });
    case(&server, "binary garbage", Login::No, |c| {
        let garbage: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n' && b != b'{').collect();
        c.send(&garbage);
        c.send(b"\r\n");
        c.untagged_bad();
        c.resynced();
    });
    case(
        &server,
        "TLS ClientHello on the plain port",
        Login::No,
        |c| {
            // A TLS client reads the plain-text greeting as a bad record and gives up; the bytes it
            // sent are one unfinished line, refused once the line ends.
            let hello = client_hello(std::array::from_fn(|i| 0x80 + i as u8));
            assert!(!hello.contains(&b'\n'));
            c.send(&hello);
            c.quiet_for(Duration::from_millis(300));
            c.send(b"\r\n");
            c.untagged_bad();
            c.resynced();
        },
    );
    case(&server, "TLS ClientHello with an LF byte", Login::No, |c| {
        let mut random: [u8; 32] = std::array::from_fn(|i| 0x90 + i as u8);
        random[9] = b'\n';
        random[10] = 0x01;
        c.send(&client_hello(random));
        c.untagged_bad();
        c.send(b"\r\n");
        c.untagged_bad();
        c.resynced();
    });

    // ----- sequence sets -----

    for (tag, command) in [
        ("q1", "FETCH 4294967296 FLAGS"),
        ("q2", "FETCH 0 FLAGS"),
        ("q3", "FETCH 1:*:* FLAGS"),
        ("q4", "FETCH 0:* FLAGS"),
        ("q5", "FETCH , FLAGS"),
        ("q6", "FETCH 1, FLAGS"),
        ("q7", "FETCH :1 FLAGS"),
        ("q8", "FETCH -1 FLAGS"),
        ("q9", "FETCH 01 FLAGS"),
        ("qa", "FETCH 1:4294967296 FLAGS"),
        ("qb", "FETCH 99999999999999999999 FLAGS"),
        ("qc", "FETCH 4294967295 FLAGS"),
        ("qd", "UID FETCH 4294967296 FLAGS"),
        ("qe", "UID FETCH 0 FLAGS"),
        ("qf", "UID FETCH 1:*:* FLAGS"),
        ("qg", "STORE 0 +FLAGS (\\Seen)"),
        ("qh", "STORE 4294967296 +FLAGS (\\Seen)"),
        ("qi", "COPY 1:*:* Trash"),
        ("qj", "MOVE 0 Trash"),
        ("qk", "SEARCH 4294967296"),
        ("ql", "SEARCH 1:*:*"),
        ("qm", "UID SEARCH UID 0"),
        ("qn", "UID EXPUNGE 0"),
        ("qo", "FETCH * :"),
    ] {
        case(&server, command, Login::Selected, |c| {
            c.expect(tag, command.as_bytes(), "BAD");
        });
    }
    case(&server, "large but valid sets", Login::Selected, |c| {
        let answer = c.ok("r1", "UID FETCH 1:4294967295 (UID)");
        assert_eq!(answer, "r1 OK FETCH completed");
        let many = vec!["1"; 10_000].join(",");
        c.ok("r2", &format!("FETCH {many} (UID)"));
        c.ok("r3", &format!("UID SEARCH UID {many}"));
        c.ok("r4", "UID FETCH 4294967295 FLAGS");
        let section = vec!["1"; 2000].join(".");
        let answer = c.run("r5", format!("FETCH 1 BODY.PEEK[{section}]").as_bytes());
        assert!(
            answer.starts_with("r5 OK") || answer.starts_with("r5 BAD"),
            "{answer}"
        );
    });

    // ----- mailbox names -----

    let invalid_utf7: &[&str] = &[
        "&Jjo",
        "&Jjo-&Jjo-",
        "&AGE-",
        "&AC8-",
        "&AC4ALg-",
        "&Jj-",
        "&-&",
        "&&-",
        "INBOX.&Jjo",
        "&2D0-",
    ];
    // Valid modified UTF-7 that the store refuses: the answer is NO [CANNOT].
    let escaping: &[&str] = &[
        "../hatoescape",
        "../../hatoescape",
        "../../../../../../tmp/hatoescape",
        "/tmp/hatoescape",
        "/etc/passwd",
        "INBOX/../../hatoescape",
        "~root/../hatoescape",
        "..",
        ".",
        ".hatoescape",
        "a..hatoescape",
        "&AAo-hatoescape",
    ];
    for name in invalid_utf7 {
        case(
            &server,
            &format!("invalid modified UTF-7 {name}"),
            Login::Yes,
            |c| {
                let bad = "BAD Invalid mailbox name (modified UTF-7 expected)";
                c.expect("m1", format!("SELECT \"{name}\"").as_bytes(), bad);
                c.expect("m2", format!("EXAMINE {name}").as_bytes(), bad);
                c.expect("m3", format!("CREATE \"{name}\"").as_bytes(), bad);
                c.expect("m4", format!("RENAME Trash \"{name}\"").as_bytes(), bad);
                c.expect("m5", format!("RENAME \"{name}\" Trash2").as_bytes(), bad);
                c.expect("m6", format!("DELETE \"{name}\"").as_bytes(), bad);
                c.expect(
                    "m7",
                    format!("STATUS \"{name}\" (MESSAGES)").as_bytes(),
                    bad,
                );
                c.expect("m8", format!("SUBSCRIBE \"{name}\"").as_bytes(), bad);
                let append = append_command(&format!("\"{name}\""), "", b"Subject: x\r\n\r\nx\r\n");
                c.expect("m9", &append, bad);
            },
        );
    }
    for name in escaping {
        case(
            &server,
            &format!("escaping name {name}"),
            Login::Selected,
            |c| {
                let quoted = format!("\"{name}\"");
                let no = "NO [CANNOT] invalid mailbox name";
                c.expect("n1", format!("SELECT {quoted}").as_bytes(), no);
                // The failed SELECT left the selected state (RFC 3501); select INBOX again.
                c.ok("S", "SELECT INBOX");
                c.expect("n2", format!("CREATE {quoted}").as_bytes(), no);
                c.expect("n3", format!("RENAME INBOX {quoted}").as_bytes(), no);
                c.expect("n4", format!("RENAME {quoted} Trash2").as_bytes(), no);
                c.expect("n5", format!("DELETE {quoted}").as_bytes(), no);
                c.expect("n6", format!("STATUS {quoted} (MESSAGES)").as_bytes(), no);
                c.expect("n7", format!("SUBSCRIBE {quoted}").as_bytes(), no);
                c.expect("n8", format!("COPY 1 {quoted}").as_bytes(), no);
                c.expect("n9", format!("MOVE 1 {quoted}").as_bytes(), no);
                let append = append_command(&quoted, "(\\Seen) ", b"Subject: x\r\n\r\nx\r\n");
                c.expect("na", &append, no);
                // As a literal too.
                let mut literal = format!("CREATE {{{}+}}\r\n", name.len()).into_bytes();
                literal.extend_from_slice(name.as_bytes());
                c.expect("nb", &literal, no);
                // LIST and LSUB never show anything of it.
                for command in [
                    format!("LIST {quoted} \"*\""),
                    format!("LIST \"\" {quoted}"),
                    format!("LSUB \"\" {quoted}"),
                ] {
                    c.send(format!("nc {command}\r\n").as_bytes());
                    loop {
                        let line = c.line();
                        assert!(!line.contains(ESCAPE) && !line.contains("passwd"), "{line}");
                        if line.starts_with("nc ") {
                            break;
                        }
                    }
                }
            },
        );
    }
    case(&server, "overlong mailbox name", Login::Yes, |c| {
        let long = "x".repeat(300);
        c.expect("o1", format!("CREATE {long}").as_bytes(), "NO [CANNOT]");
        let deep = vec!["x"; 200].join(".");
        c.expect("o2", format!("CREATE {deep}").as_bytes(), "NO [CANNOT]");
    });
    case(
        &server,
        "valid but odd names stay inside",
        Login::Yes,
        |c| {
            c.expect("v1", b"SELECT ~root", "NO [NONEXISTENT]");
            c.expect("v2", b"SELECT &-", "NO [NONEXISTENT]");
            c.expect("v5", b"RENAME ~root Trash2", "NO [NONEXISTENT]");
            let append = append_command("~root", "", b"Subject: x\r\n\r\nx\r\n");
            c.expect("v6", &append, "NO [TRYCREATE]");
            let created = c.run("v3", b"CREATE ~root");
            assert!(
                created.starts_with("v3 OK") || created.starts_with("v3 NO"),
                "{created}"
            );
            c.resynced();
            let deleted = c.run("v4", b"DELETE ~root");
            assert!(
                deleted.starts_with("v4 OK") || deleted.starts_with("v4 NO"),
                "{deleted}"
            );
            c.resynced();
        },
    );
    case(&server, "path names as user names", Login::No, |c| {
        for (tag, user) in [("u1", "../carol"), ("u2", "/etc/passwd")] {
            let answer = c.run(tag, format!("LOGIN \"{user}\" carol-pw").as_bytes());
            assert!(answer.starts_with(&format!("{tag} NO")), "{answer}");
        }
        c.resynced();
    });

    // ----- a fresh client is served as before -----

    let mut c = Conn::logged_in(addr, "final");
    c.send(b"s SELECT INBOX\r\n");
    let mut exists = None;
    loop {
        let line = c.line();
        if let Some(n) = line
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" EXISTS"))
        {
            exists = n.parse::<u32>().ok();
        }
        if line.starts_with("s ") {
            assert!(line.starts_with("s OK"), "{line}");
            break;
        }
    }
    assert_eq!(
        exists,
        Some(1),
        "no hostile command stored or removed a message"
    );
    c.send(b"f FETCH 1 BODY.PEEK[]\r\n");
    let head = c.line();
    assert!(
        head.ends_with(&format!("{{{}}}", CANARY.len())),
        "fetch: {head}"
    );
    let mut body = vec![0u8; CANARY.len()];
    std::io::Read::read_exact(&mut c.reader, &mut body).expect("literal");
    assert_eq!(body, CANARY);
    assert!(c.answer("f").starts_with("f OK"));
    drop(c);
    assert_alive(&server, "final");

    // ----- nothing escaped the user's mail directory -----

    let after = tree(spool.path());
    let outside: Vec<&PathBuf> = after
        .difference(&before)
        .filter(|p| !p.starts_with(&mail_dir))
        .collect();
    assert!(
        outside.is_empty(),
        "created outside mail/carol: {outside:?}"
    );
    for path in &after {
        assert!(
            !path.to_string_lossy().contains(ESCAPE),
            "a hostile name reached the disk: {}",
            path.display()
        );
    }
    let parent = spool.path().parent().expect("parent");
    for dir in [parent, Path::new("/tmp"), Path::new("/")] {
        assert!(!dir.join(ESCAPE).exists(), "{}", dir.join(ESCAPE).display());
    }
    let passwd_after = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    assert_eq!(passwd_before, passwd_after);
    // Refused and half-sent APPENDs left nothing behind in tmp/.
    let tmp = std::fs::read_dir(spool.path().join(&mail_dir).join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(tmp, 0, "files left in tmp/");
}

#[test]
fn overlong_line_arriving_in_pieces_is_refused() {
    let spool = Spool::new();
    spool.reg_set("Workers", &WORKERS.to_string());
    let server = start(&spool);
    case(&server, "overlong line over two reads", Login::No, |c| {
        let mut first = b"o1 NOOP ".to_vec();
        first.resize(40_000, b'x');
        c.send(&first);
        std::thread::sleep(Duration::from_millis(200));
        c.send(&[b'x'; 40_000]);
        // Refused once the limit is passed, before the line ends; the rest is discarded.
        assert_eq!(
            c.line(),
            format!("o1 BAD Line too long (limit {MAX_LINE} bytes)")
        );
        std::thread::sleep(Duration::from_millis(200));
        c.send(&[b'x'; 10_000]);
        c.send(b"\r\n");
        c.resynced();
    });
}

#[test]
fn oversized_non_synchronizing_literal_is_refused_and_swallowed() {
    let spool = Spool::new();
    spool.reg_set("Workers", &WORKERS.to_string());
    let server = start(&spool);
    case(
        &server,
        "MaxLiteralSize + 1 LITERAL+ at APPEND",
        Login::Yes,
        |c| {
            c.send(format!("a1 APPEND INBOX {{{}+}}\r\n", MAX_LITERAL + 1).as_bytes());
            assert_eq!(c.line(), "a1 NO [TOOBIG] Literal too big");
            // The client sends the literal anyway: it is swallowed, then the next command runs.
            let chunk = vec![b'x'; 1 << 20];
            let mut left = MAX_LITERAL + 1;
            while left > 0 {
                let n = left.min(chunk.len() as u64);
                c.send(&chunk[..n as usize]);
                left -= n;
            }
            c.send(b"\r\n");
            c.resynced();
        },
    );
    for spec in ["{4294967296+}", "{18446744073709551615+}"] {
        case(&server, &format!("{spec} at LOGIN"), Login::No, |c| {
            c.send(format!("l1 LOGIN {spec}\r\n").as_bytes());
            assert_eq!(c.line(), "l1 NO [TOOBIG] Literal too big");
            c.send(&[b'y'; 100_000]);
        });
    }
}

/// The peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn chained_literals_cannot_make_the_server_buffer_without_bound() {
    const LITERAL: usize = 1 << 20;
    const COUNT: usize = 64;
    let spool = Spool::new();
    spool.reg_set("MaxLiteralSize", &LITERAL.to_string());
    let server = start(&spool);
    let before = peak_rss_kib(server.pid());
    let mut c = Conn::open(server.imap, "chained literals before login");
    let chunk = vec![b'x'; LITERAL];
    c.send(format!("l1 LOGIN {{{LITERAL}+}}\r\n").as_bytes());
    c.send(&chunk);
    for _ in 1..COUNT {
        c.send(format!(" {{{LITERAL}+}}\r\n").as_bytes());
        c.send(&chunk);
    }
    c.send(b"\r\n");
    c.refused("l1");
    drop(c);
    assert_alive(&server, "chained literals");
    let grown = peak_rss_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "the server's peak memory grew by {grown} KiB for one command of {COUNT} literals of \
         {LITERAL} bytes (MaxLiteralSize)"
    );
}

#[test]
fn answers_stay_seven_bit_for_non_ascii_mailbox_names() {
    let spool = Spool::new();
    let server = start(&spool);
    case(&server, "non-ASCII names", Login::Yes, |c| {
        for (tag, command) in [
            ("a", "SELECT &Jjo-"),
            ("b", "STATUS &Jjo- (MESSAGES)"),
            ("c", "DELETE &Jjo-"),
            ("d", "RENAME &Jjo- x"),
            ("e", "CREATE INBOX"),
        ] {
            let answer = c.run(tag, command.as_bytes());
            assert!(answer.starts_with(&format!("{tag} NO")), "{answer}");
            assert!(answer.is_ascii(), "8-bit answer text: {answer}");
        }
    });
}
