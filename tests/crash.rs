//! Crash safety end to end: the real server under concurrent IMAP APPEND and LMTP delivery is
//! killed with SIGKILL at a random moment, restarted on the same spool, and every folder is
//! read back. Several rounds on one spool:
//!
//! * every message acknowledged (tagged `OK` with `APPENDUID`, or LMTP `250` for that
//!   recipient) is present exactly once, with its full size;
//! * no Message-ID appears twice in a folder, acknowledged or not, and nothing appears that was
//!   not sent there;
//! * UIDs are unique, each acknowledged APPENDUID still names the same message, UIDVALIDITY
//!   never changes, and a message keeps the UID it was seen with in earlier rounds.
//!
//! The random choices (load duration, message sizes, folders) come from a seed printed at the
//! start; set `HATO_CRASH_SEED` to replay one.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, Server, Spool};

const ROUNDS: usize = 4;
const IMAP_THREADS: usize = 4;
const LMTP_THREADS: usize = 3;
/// APPENDs each IMAP connection keeps in flight (LITERAL+ pipelining).
const WINDOW: usize = 2;
/// The second folder the IMAP threads append to.
const FOLDER: &str = "Load";
const SENDER: &str = "load@example.org";
/// Every read and write of the load clients; a killed server closes its sockets at once.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// A folder of a user.
type Place = (&'static str, &'static str);
const CAROL_INBOX: Place = ("carol", "INBOX");
const CAROL_LOAD: Place = ("carol", FOLDER);
const ALICE_INBOX: Place = ("alice", "INBOX");
const PLACES: [Place; 3] = [CAROL_INBOX, CAROL_LOAD, ALICE_INBOX];

fn password(user: &str) -> &'static str {
    match user {
        "carol" => "carol-pw",
        "alice" => "alice-pw",
        other => panic!("no password for {other}"),
    }
}

/// xorshift64*: small, seedable, good enough to pick sizes and delays.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next() | 1)
    }
}

/// What the clients sent and what the server acknowledged, over all rounds.
#[derive(Default)]
struct Ledger {
    /// Every message sent (acknowledged or not), by place and Message-ID: its stored size.
    sent: HashMap<(Place, String), usize>,
    /// Messages acknowledged for a place.
    acked: HashSet<(Place, String)>,
    /// Acknowledged APPENDUIDs: place, UIDVALIDITY, UID, Message-ID.
    appenduids: Vec<(Place, u32, u32, String)>,
    /// Answers that are neither an acknowledgement nor a dropped connection (a refusal).
    failures: Vec<String>,
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// A line-oriented connection that reports every failure as `None` (the server may die at any
/// moment). A line counts only when it is complete, CRLF included.
struct Wire {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Wire {
    fn connect(addr: SocketAddr) -> Option<Wire> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(IO_LIMIT)).ok()?;
        stream.set_write_timeout(Some(IO_LIMIT)).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        Some(Wire { stream, reader })
    }

    fn send(&mut self, bytes: &[u8]) -> Option<()> {
        self.stream.write_all(bytes).ok()
    }

    fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf).ok()?;
        let text = String::from_utf8_lossy(buf.strip_suffix(b"\r\n")?).into_owned();
        Some(text)
    }

    /// Reads IMAP lines until one starts with `tag `.
    fn tagged(&mut self, tag: &str) -> Option<String> {
        let prefix = format!("{tag} ");
        loop {
            let line = self.line()?;
            if line.starts_with(&prefix) {
                return Some(line);
            }
        }
    }

    /// One (possibly multi-line) SMTP/LMTP reply; its last line.
    fn reply(&mut self) -> Option<String> {
        loop {
            let line = self.line()?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    }
}

/// A message with a unique Message-ID and a body of `size` bytes or so, CRLF line ends, no
/// line starting with a dot.
fn message(id: &str, rng: &mut Rng) -> Vec<u8> {
    let mut m = format!(
        "Message-ID: {id}\r\nFrom: <{SENDER}>\r\nTo: <carol@example.com>\r\nSubject: load {id}\r\n\r\n"
    )
    .into_bytes();
    let lines = 1 + rng.below(200);
    for i in 0..lines {
        let width = 1 + rng.below(76) as usize;
        let c = b'a' + (i % 26) as u8;
        m.extend(std::iter::repeat_n(c, width));
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Knobs shared by the load threads of one round.
struct Load {
    round: usize,
    ready: AtomicUsize,
    ledger: Shared,
}

/// One IMAP connection appending to INBOX and `FOLDER` with LITERAL+, `WINDOW` at a time.
fn imap_appender(addr: SocketAddr, id: usize, mut rng: Rng, load: Arc<Load>) {
    let session = (|| {
        let mut wire = Wire::connect(addr)?;
        wire.line()?;
        wire.send(b"L LOGIN carol carol-pw\r\n")?;
        let answer = wire.tagged("L")?;
        assert!(answer.starts_with("L OK"), "load login: {answer}");
        Some(wire)
    })();
    load.ready.fetch_add(1, Ordering::SeqCst);
    let Some(mut wire) = session else { return };
    let mut inflight: VecDeque<(String, Place, String)> = VecDeque::new();
    let mut n = 0u64;
    loop {
        while inflight.len() < WINDOW {
            n += 1;
            let place = if rng.below(2) == 0 {
                CAROL_INBOX
            } else {
                CAROL_LOAD
            };
            let msgid = format!("<r{}.i{id}.{n}.{:x}@crash.test>", load.round, rng.next());
            let content = message(&msgid, &mut rng);
            lock(&load.ledger)
                .sent
                .insert((place, msgid.clone()), content.len());
            let tag = format!("A{n}");
            let mut command =
                format!("{tag} APPEND {} {{{}+}}\r\n", place.1, content.len()).into_bytes();
            command.extend_from_slice(&content);
            command.extend_from_slice(b"\r\n");
            if wire.send(&command).is_none() {
                return;
            }
            inflight.push_back((tag, place, msgid));
        }
        let Some((tag, place, msgid)) = inflight.pop_front() else {
            return;
        };
        let Some(answer) = wire.tagged(&tag) else {
            return;
        };
        let mut ledger = lock(&load.ledger);
        match parse_appenduid(&answer, &tag) {
            Some((validity, uid)) => {
                ledger.acked.insert((place, msgid.clone()));
                ledger.appenduids.push((place, validity, uid, msgid));
            }
            None => ledger.failures.push(format!("APPEND {msgid}: {answer}")),
        }
    }
}

/// `<tag> OK [APPENDUID <validity> <uid>] ...`
fn parse_appenduid(answer: &str, tag: &str) -> Option<(u32, u32)> {
    let rest = answer.strip_prefix(&format!("{tag} OK [APPENDUID "))?;
    let (code, _) = rest.split_once(']')?;
    let (validity, uid) = code.split_once(' ')?;
    Some((validity.parse().ok()?, uid.parse().ok()?))
}

/// The size of the copy LMTP stores for `recipient`: trace headers, then the message.
fn lmtp_stored_size(recipient: &str, content: &[u8]) -> usize {
    format!("Return-Path: <{SENDER}>\r\nDelivered-To: <{recipient}>\r\n").len() + content.len()
}

/// One LMTP connection delivering to carol and alice, the envelope pipelined.
fn lmtp_deliverer(addr: SocketAddr, id: usize, mut rng: Rng, load: Arc<Load>) {
    let session = (|| {
        let mut wire = Wire::connect(addr)?;
        let greeting = wire.reply()?;
        assert!(greeting.starts_with("220 "), "LMTP greeting: {greeting}");
        wire.send(b"LHLO load.example\r\n")?;
        let lhlo = wire.reply()?;
        assert!(lhlo.starts_with("250 "), "LHLO: {lhlo}");
        Some(wire)
    })();
    load.ready.fetch_add(1, Ordering::SeqCst);
    let Some(mut wire) = session else { return };
    let recipients = [
        ("carol@example.com", CAROL_INBOX),
        ("alice@example.com", ALICE_INBOX),
    ];
    let mut n = 0u64;
    loop {
        n += 1;
        let msgid = format!("<r{}.l{id}.{n}.{:x}@crash.test>", load.round, rng.next());
        let content = message(&msgid, &mut rng);
        {
            let mut ledger = lock(&load.ledger);
            for (address, place) in recipients {
                ledger
                    .sent
                    .insert((place, msgid.clone()), lmtp_stored_size(address, &content));
            }
        }
        let envelope = format!(
            "MAIL FROM:<{SENDER}>\r\nRCPT TO:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n",
            recipients[0].0, recipients[1].0
        );
        if wire.send(envelope.as_bytes()).is_none() {
            return;
        }
        for expected in ["250 ", "250 ", "250 ", "354 "] {
            let Some(reply) = wire.reply() else { return };
            if !reply.starts_with(expected) {
                lock(&load.ledger)
                    .failures
                    .push(format!("LMTP envelope {msgid}: {reply}"));
                return;
            }
        }
        let mut data = content;
        data.extend_from_slice(b".\r\n");
        if wire.send(&data).is_none() {
            return;
        }
        for (address, place) in recipients {
            let Some(reply) = wire.reply() else { return };
            let mut ledger = lock(&load.ledger);
            if reply == format!("250 2.0.0 <{address}> delivered") {
                ledger.acked.insert((place, msgid.clone()));
            } else {
                ledger
                    .failures
                    .push(format!("LMTP {msgid} for {address}: {reply}"));
            }
        }
    }
}

/// Keeps INBOX selected and busy while the load runs: NOOPs, FETCHes and flag changes, so that
/// the kill also lands in the middle of renames and rescans.
fn imap_reader(addr: SocketAddr, mut rng: Rng, load: Arc<Load>) {
    let session = (|| {
        let mut wire = Wire::connect(addr)?;
        wire.line()?;
        wire.send(b"L LOGIN carol carol-pw\r\nS SELECT INBOX\r\n")?;
        wire.tagged("L")?;
        wire.tagged("S")?;
        Some(wire)
    })();
    load.ready.fetch_add(1, Ordering::SeqCst);
    let Some(mut wire) = session else { return };
    let mut n = 0u64;
    loop {
        n += 1;
        let tag = format!("R{n}");
        let command = match rng.below(3) {
            0 => "NOOP".to_string(),
            1 => "UID FETCH 1:* (UID FLAGS)".to_string(),
            _ => format!("STORE {}:* +FLAGS.SILENT (\\Seen)", 1 + rng.below(50)),
        };
        if wire
            .send(format!("{tag} {command}\r\n").as_bytes())
            .is_none()
            || wire.tagged(&tag).is_none()
        {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn start(spool: &Spool) -> (Server, SocketAddr) {
    let server = Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"]);
    let lmtp = server.announced("LMTP").expect("LMTP listener");
    (server, lmtp)
}

/// `kill -9` the server, then reap it (dropping a `Server` waits for its process).
fn kill9(server: Server) {
    let pid = libc::pid_t::try_from(server.pid()).expect("pid");
    // SAFETY: kill(2) has no memory effects; the pid is our child, not yet reaped, so it
    // cannot name another process.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(
        killed,
        0,
        "kill -9 {pid}: {}",
        std::io::Error::last_os_error()
    );
    drop(server);
}

/// One message as FETCH reports it.
struct Seen {
    uid: u32,
    size: usize,
    msgid: String,
}

/// Logs in as `user` and reads `folder`: its UIDVALIDITY and every message.
fn read_folder(server: &Server, (user, folder): Place) -> (u32, Vec<Seen>) {
    let mut c: Client = server.connect();
    let login = c.run("L", &format!("LOGIN {user} {}", password(user)));
    assert!(login.starts_with("L OK"), "{login}");
    c.send(format!("S SELECT {folder}\r\n").as_bytes());
    let (untagged, tagged) = c.until_tagged("S");
    assert!(tagged.starts_with("S OK"), "SELECT {folder}: {tagged}");
    let exists: usize = untagged
        .iter()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .expect("EXISTS");
    let validity: u32 = untagged
        .iter()
        .find_map(|l| {
            l.strip_prefix("* OK [UIDVALIDITY ")?
                .split(']')
                .next()?
                .parse()
                .ok()
        })
        .expect("UIDVALIDITY");
    let mut seen = Vec::new();
    if exists > 0 {
        c.send(b"F UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\n");
        loop {
            let line = c.line();
            if line.starts_with("F ") {
                assert!(line.starts_with("F OK"), "UID FETCH: {line}");
                break;
            }
            if !line.contains(" FETCH (") {
                continue;
            }
            // The text around the literals, and the literals.
            let mut text = String::new();
            let mut literal = Vec::new();
            let mut current = line;
            loop {
                text.push_str(&current);
                text.push(' ');
                let size = current
                    .strip_suffix('}')
                    .and_then(|s| s.rsplit_once('{'))
                    .and_then(|(_, n)| n.parse::<usize>().ok());
                let Some(size) = size else { break };
                literal.extend(c.bytes(size));
                current = c.line();
            }
            let number = |name: &str| -> Option<u64> {
                let at = text.find(&format!("{name} "))? + name.len() + 1;
                text[at..]
                    .split(|ch: char| !ch.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            let uid = number("UID").unwrap_or_else(|| panic!("no UID in {text}"));
            let size = number("RFC822.SIZE").unwrap_or_else(|| panic!("no size in {text}"));
            let header = String::from_utf8_lossy(&literal).into_owned();
            let msgid = header
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("Message-ID")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no Message-ID in {header:?}"));
            seen.push(Seen {
                uid: u32::try_from(uid).expect("UID"),
                size: usize::try_from(size).expect("size"),
                msgid,
            });
        }
    }
    assert_eq!(
        seen.len(),
        exists,
        "{user}/{folder}: FETCH answers for every message"
    );
    let _ = c.run("Z", "LOGOUT");
    (validity, seen)
}

/// What earlier rounds saw: UIDVALIDITY per folder, UID per message.
#[derive(Default)]
struct History {
    validity: HashMap<Place, u32>,
    uids: HashMap<(Place, String), u32>,
}

/// Reads every folder back and checks it against the ledger and the history.
fn verify(server: &Server, ledger: &Ledger, history: &mut History, label: &str) -> usize {
    let mut unacknowledged = 0;
    for place in PLACES {
        let (validity, seen) = read_folder(server, place);
        let at = format!("{label}, {}/{}", place.0, place.1);
        if let Some(&before) = history.validity.get(&place) {
            assert_eq!(validity, before, "{at}: UIDVALIDITY changed");
        }
        history.validity.insert(place, validity);

        let mut uids = HashSet::new();
        let mut by_msgid: HashMap<&str, u32> = HashMap::new();
        for m in &seen {
            assert!(uids.insert(m.uid), "{at}: UID {} twice", m.uid);
            if let Some(other) = by_msgid.insert(&m.msgid, m.uid) {
                panic!("{at}: {} twice, UIDs {other} and {}", m.msgid, m.uid);
            }
            let key = (place, m.msgid.clone());
            let expected = ledger
                .sent
                .get(&key)
                .unwrap_or_else(|| panic!("{at}: {} was never sent here", m.msgid));
            assert_eq!(m.size, *expected, "{at}: {} has the wrong size", m.msgid);
            if !ledger.acked.contains(&key) {
                unacknowledged += 1;
            }
        }
        let mut ascending: Vec<u32> = seen.iter().map(|m| m.uid).collect();
        ascending.sort_unstable();
        assert_eq!(
            ascending,
            seen.iter().map(|m| m.uid).collect::<Vec<_>>(),
            "{at}: UID FETCH answers in UID order"
        );

        for (acked_place, msgid) in &ledger.acked {
            if *acked_place == place {
                assert!(
                    by_msgid.contains_key(msgid.as_str()),
                    "{at}: acknowledged {msgid} is lost"
                );
            }
        }
        for (p, v, uid, msgid) in &ledger.appenduids {
            if *p != place {
                continue;
            }
            assert_eq!(
                *v, validity,
                "{at}: APPENDUID of {msgid} had UIDVALIDITY {v}"
            );
            assert_eq!(
                by_msgid.get(msgid.as_str()),
                Some(uid),
                "{at}: APPENDUID {uid} was given to {msgid}"
            );
        }
        for ((p, msgid), uid) in &history.uids {
            if *p == place {
                assert_eq!(
                    by_msgid.get(msgid.as_str()),
                    Some(uid),
                    "{at}: {msgid} was seen with UID {uid} in an earlier round"
                );
            }
        }
        for m in &seen {
            history.uids.insert((place, m.msgid.clone()), m.uid);
        }
    }
    unacknowledged
}

#[test]
fn acknowledged_mail_survives_kill_9_with_stable_uids() {
    let seed = std::env::var("HATO_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test seed: HATO_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let spool = Spool::new();
    let ledger: Shared = Arc::default();
    let mut history = History::default();
    let (mut server, mut lmtp) = start(&spool);
    {
        let mut c = server.connect();
        assert!(c.run("L", "LOGIN carol carol-pw").starts_with("L OK"));
        assert!(c.run("C", &format!("CREATE {FOLDER}")).starts_with("C OK"));
    }

    for round in 0..ROUNDS {
        let acked_before = lock(&ledger).acked.len();
        let load = Arc::new(Load {
            round,
            ready: AtomicUsize::new(0),
            ledger: ledger.clone(),
        });
        let mut threads = Vec::new();
        for id in 0..IMAP_THREADS {
            let (rng, load, addr) = (rng.fork(), load.clone(), server.imap);
            threads.push(thread::spawn(move || imap_appender(addr, id, rng, load)));
        }
        for id in 0..LMTP_THREADS {
            let (rng, load) = (rng.fork(), load.clone());
            threads.push(thread::spawn(move || lmtp_deliverer(lmtp, id, rng, load)));
        }
        {
            let (rng, load, addr) = (rng.fork(), load.clone(), server.imap);
            threads.push(thread::spawn(move || imap_reader(addr, rng, load)));
        }
        let everyone = threads.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while load.ready.load(Ordering::SeqCst) < everyone {
            // A client that failed to set up is reported when joined below.
            if threads.iter().any(|t| t.is_finished()) {
                break;
            }
            assert!(Instant::now() < deadline, "load clients did not connect");
            thread::sleep(Duration::from_millis(5));
        }
        let duration = Duration::from_millis(300 + rng.below(1700));
        thread::sleep(duration);

        kill9(server);
        for t in threads {
            t.join().expect("load thread");
        }

        (server, lmtp) = start(&spool);
        let book = lock(&ledger);
        assert!(
            book.failures.is_empty(),
            "refused during load: {:?}",
            book.failures
        );
        let acked = book.acked.len() - acked_before;
        assert!(acked > 0, "round {round}: nothing was acknowledged");
        let unacknowledged = verify(&server, &book, &mut history, &format!("round {round}"));
        eprintln!(
            "round {round}: killed after {duration:?}; {acked} copies acknowledged, \
             {} in total; {unacknowledged} unacknowledged copies in the folders",
            book.acked.len()
        );
    }
    drop(server);
    eprintln!("crash test done in {:?}", started.elapsed());
}
