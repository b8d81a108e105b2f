//! Scale-out behind nginx's mail proxy, end to end: Debian's nginx with its mail module, on
//! loopback, in front of three hato nodes (each with its own spool and ports) and a
//! `hato director` answering nginx's `auth_http` requests.
//!
//! Shown: each user always lands on the node that owns them (their mail is in that node's
//! spool and no other); a wrong password is refused by the director without reaching a node;
//! an LMTP delivery to the owning node wakes the user's IDLE through the proxy; the per-user+IP
//! cap of a node counts the real client addresses that nginx passes in its PROXY header. And,
//! without nginx: a trusted proxy must send a PROXY header, anyone else must not.
//!
//! Clients connect from several 127.0.0.0/8 addresses (Linux routes all of them to
//! loopback), so the addresses a node sees tell a relayed client from nginx itself.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use common::{BIN, Client, Server, Spool, free_port};

/// The mail module of Debian's nginx (package libnginx-mod-mail).
const MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";

/// Users of every spool beyond the harness's alice, bob and carol, so users spread over the
/// nodes (their password is `<name>-pw`).
const EXTRA_USERS: [&str; 5] = ["dave", "erin", "frank", "grace", "heidi"];

/// Every user and their password. bob's has spaces and quotes: nginx escapes it for the
/// director and sends it to the node as a literal.
fn users() -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("alice", "alice-pw".to_string()),
        ("bob", "bob pw \"quoted\"".to_string()),
        ("carol", "carol-pw".to_string()),
    ];
    all.extend(EXTRA_USERS.iter().map(|u| (*u, format!("{u}-pw"))));
    all
}

/// `LOGIN` arguments for a user, quoted for IMAP.
fn login_args(user: &str, password: &str) -> String {
    let quoted = password.replace('\\', "\\\\").replace('"', "\\\"");
    format!("LOGIN {user} \"{quoted}\"")
}

/// Installs nginx and its mail module once per test binary (CI installs them beforehand, in
/// `.ci/run`, so tests never run apt-get at the same time).
fn ensure_nginx() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        common::ensure_command("nginx", "nginx");
        if !Path::new(MAIL_MODULE).exists() {
            let _ = Command::new("apt-get").arg("update").status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "libnginx-mod-mail"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
    });
    assert!(
        Path::new(MAIL_MODULE).exists(),
        "{MAIL_MODULE} is needed; install Debian's libnginx-mod-mail"
    );
}

/// A process this test started; killed (by pid) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first stdout line of `child` that starts with `prefix`, with the prefix removed.
fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => match line.strip_prefix(prefix) {
                Some(rest) => return rest.to_string(),
                None => seen.push(line),
            },
            Err(e) => panic!("no {prefix:?} line: {e}; output so far: {seen:?}"),
        }
    }
}

/// One hato node.
struct Node {
    name: String,
    spool: Spool,
    server: Server,
    lmtp: SocketAddr,
}

impl Node {
    /// The sessions `hato who` lists: (user, address) pairs.
    fn who(&self) -> Vec<(String, String)> {
        self.spool
            .hato_ok(&["who"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut cells = line.split_whitespace();
                Some((cells.next()?.to_string(), cells.next()?.to_string()))
            })
            .filter(|(user, _)| user != "USER")
            .filter(|(_, address)| address.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// Messages in a user's INBOX on this node's disk.
    fn inbox_files(&self, user: &str) -> usize {
        let root = self.spool.path().join("mail").join(user);
        ["cur", "new"]
            .iter()
            .filter_map(|d| fs::read_dir(root.join(d)).ok())
            .map(|entries| entries.count())
            .sum()
    }
}

/// Three nodes, a director and nginx, all on loopback.
struct Cluster {
    // Dropped first: nginx, then the director, then the nodes.
    _nginx: Process,
    nginx_dir: tempfile::TempDir,
    _director: Process,
    director_spool: Spool,
    nodes: Vec<Node>,
    /// nginx's IMAP address.
    proxy: SocketAddr,
}

impl Cluster {
    fn start() -> Cluster {
        ensure_nginx();
        let mut nodes = Vec::new();
        for name in ["n1", "n2", "n3"] {
            let spool = with_extra_users(Spool::new());
            // nginx connects from 127.0.0.1 and sends the client's address first.
            spool.reg_set("ProxyProtocolFrom", "127.0.0.1");
            // One session per user and client address: a second one from the same address
            // closes the first (the cap test relies on it; the others never hold two).
            spool.reg_set("MaxUserIpSessions", "1");
            let server = Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"]);
            let lmtp = server.announced("LMTP").expect("LMTP address");
            nodes.push(Node {
                name: name.to_string(),
                spool,
                server,
                lmtp,
            });
        }

        let director_spool = with_extra_users(Spool::new());
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.server.imap))
            .collect();
        director_spool.reg_set("DirectorNodes", &list.join(", "));
        let mut child = Command::new(BIN)
            .args(["director", "--listen", "127.0.0.1:0", "--spool"])
            .arg(director_spool.path())
            .env("HATO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hato director");
        let announced = wait_for_line(&mut child, "hato: listening for auth_http on ");
        let director = Process(child);
        let auth_http: SocketAddr = announced.parse().expect("director address");

        let nginx_dir = tempfile::tempdir().expect("tempdir");
        let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let nginx = start_nginx(nginx_dir.path(), auth_http, proxy);
        Cluster {
            _nginx: nginx,
            nginx_dir,
            _director: director,
            director_spool,
            nodes,
            proxy,
        }
    }

    /// The node `hato director --owner` names for `user`.
    fn owner(&self, user: &str) -> &Node {
        let out = self.director_spool.hato_ok(&["director", "--owner", user]);
        let name = out.split_whitespace().next().expect("node name");
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{user}: unknown node in {out:?}"))
    }

    /// A client of the proxy, connecting from `from`.
    fn connect_from(&self, from: [u8; 4]) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::from((from, 0)).into())
            .expect("bind source address");
        socket
            .connect(&self.proxy.into())
            .expect("connect to nginx");
        Client::greeted(TcpStream::from(socket))
    }

    fn nginx_log(&self) -> String {
        fs::read_to_string(self.nginx_dir.path().join("error.log")).unwrap_or_default()
    }
}

fn with_extra_users(spool: Spool) -> Spool {
    for user in EXTRA_USERS {
        spool.add_plain_user(user, &format!("{user}-pw"));
    }
    spool
}

/// Starts nginx with a private configuration (single process, logs and pid in `dir`), and
/// waits until it greets on `listen`.
fn start_nginx(dir: &Path, auth_http: SocketAddr, listen: SocketAddr) -> Process {
    let log = dir.join("error.log");
    let config = format!(
        "load_module {MAIL_MODULE};\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         error_log {log} info;\n\
         pid {pid};\n\
         events {{ worker_connections 256; }}\n\
         mail {{\n\
           server_name proxy.test;\n\
           auth_http {auth_http}/auth;\n\
           proxy_pass_error_message on;\n\
           proxy_protocol on;\n\
           imap_capabilities IMAP4rev1 LITERAL+ IDLE;\n\
           server {{ listen {listen}; protocol imap; }}\n\
         }}\n",
        log = log.display(),
        pid = dir.join("nginx.pid").display(),
    );
    let config_path: PathBuf = dir.join("nginx.conf");
    fs::write(&config_path, config).expect("write nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nginx");
    let mut nginx = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(stream) = TcpStream::connect(listen) {
            // Greets, then the connection is dropped.
            Client::greeted(stream);
            return nginx;
        }
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!(
                "nginx exited ({status}): {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {listen}: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Delivers a message to `user` over the LMTP of `lmtp`.
fn lmtp_deliver(lmtp: SocketAddr, user: &str, subject: &str) {
    let stream = TcpStream::connect(lmtp).expect("connect LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut reply = || {
        // A multi-line reply ends with the line whose code is followed by a space.
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("LMTP reply");
            assert!(!line.is_empty(), "LMTP connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    assert!(reply().starts_with("220"));
    for (command, code) in [
        ("LHLO test".to_string(), "250"),
        ("MAIL FROM:<sender@example.com>".to_string(), "250"),
        (format!("RCPT TO:<{user}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        write!(writer, "{command}\r\n").expect("send");
        let line = reply();
        assert!(line.starts_with(code), "{command}: {line}");
    }
    write!(writer, "Subject: {subject}\r\n\r\nHello.\r\n.\r\n").expect("send");
    let line = reply();
    assert!(line.starts_with("250"), "delivery: {line}");
    write!(writer, "QUIT\r\n").expect("send");
}

/// Reads untagged lines until one satisfies `want` (each read bounded by the client's
/// timeout; panics on end of stream).
fn expect_untagged(c: &mut Client, want: impl Fn(&str) -> bool) -> String {
    loop {
        let line = c.next_line().expect("connection open");
        if want(&line) {
            return line;
        }
    }
}

#[test]
fn each_user_always_lands_on_its_node() {
    let cluster = Cluster::start();
    let owners: Vec<(&str, String, &Node)> = users()
        .into_iter()
        .map(|(user, password)| (user, password, cluster.owner(user)))
        .collect();
    let distinct: std::collections::BTreeSet<&str> =
        owners.iter().map(|(_, _, n)| n.name.as_str()).collect();
    assert!(
        distinct.len() >= 2,
        "all users hash to one node: {distinct:?}"
    );

    for round in 1..=2 {
        for (user, password, _) in &owners {
            let mut c = cluster.connect_from([127, 0, 0, 2]);
            let ok = c.run("a", &login_args(user, password));
            assert!(
                ok.starts_with("a OK"),
                "{user}: {ok}\n{}",
                cluster.nginx_log()
            );
            let message = format!("Subject: round {round} for {user}\r\n\r\nbody\r\n");
            c.send(format!("b APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
            let (_, appended) = c.until_tagged("b");
            assert!(appended.starts_with("b OK"), "{user}: {appended}");
            c.run("c", "LOGOUT");
        }
    }

    for (user, password, owner) in &owners {
        // Both rounds went to the owner's disk, and nowhere else.
        for node in &cluster.nodes {
            let want = if node.name == owner.name { 2 } else { 0 };
            assert_eq!(
                node.inbox_files(user),
                want,
                "{user}: messages on {} (owner {})",
                node.name,
                owner.name
            );
        }
        // And a new session sees both: it is on the same node again.
        let mut c = cluster.connect_from([127, 0, 0, 3]);
        assert!(c.run("a", &login_args(user, password)).starts_with("a OK"));
        c.send(b"s SELECT INBOX\r\n");
        let (untagged, done) = c.until_tagged("s");
        assert!(done.starts_with("s OK"), "{user}: {done}");
        assert!(
            untagged.iter().any(|l| l == "* 2 EXISTS"),
            "{user}: {untagged:?}"
        );
        c.run("z", "LOGOUT");
    }
}

#[test]
fn a_wrong_password_is_refused_before_any_node() {
    let cluster = Cluster::start();
    let mut c = cluster.connect_from([127, 0, 0, 2]);
    let wrong = c.run("a", "LOGIN alice not-her-password");
    assert!(
        wrong.starts_with("a NO") && wrong.contains("AUTHENTICATIONFAILED"),
        "{wrong}"
    );
    // An unknown user gets exactly the same answer.
    let unknown = c.run("b", "LOGIN mallory whatever");
    assert_eq!(unknown.replacen('b', "a", 1), wrong);
    // Nothing reached a node: nginx asks the director first.
    for node in &cluster.nodes {
        assert!(node.who().is_empty(), "{}: {:?}", node.name, node.who());
    }
    // The director told nginx to let the client try again: same connection, right password.
    let ok = c.run("c", &login_args("alice", "alice-pw"));
    assert!(ok.starts_with("c OK"), "{ok}");
    let owner = cluster.owner("alice");
    let sessions = owner.who();
    assert_eq!(sessions, [("alice".to_string(), "127.0.0.2".to_string())]);
}

#[test]
fn an_lmtp_delivery_to_the_owner_wakes_idle_through_the_proxy() {
    let cluster = Cluster::start();
    let owner = cluster.owner("carol");
    let mut c = cluster.connect_from([127, 0, 0, 2]);
    assert!(
        c.run("a", &login_args("carol", "carol-pw"))
            .starts_with("a OK")
    );
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    c.send(b"i IDLE\r\n");
    let cont = c.line();
    assert!(cont.starts_with("+ "), "{cont}");

    lmtp_deliver(owner.lmtp, "carol", "through the proxy");
    let pushed = expect_untagged(&mut c, |l| l.ends_with(" EXISTS"));
    assert_eq!(pushed, "* 1 EXISTS");
    c.send(b"DONE\r\n");
    let (_, done) = c.until_tagged("i");
    assert!(done.starts_with("i OK"), "{done}");
    c.send(b"f FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n");
    let (lines, fetched) = c.until_tagged("f");
    assert!(fetched.starts_with("f OK"), "{fetched}");
    assert!(
        lines.iter().any(|l| l == "Subject: through the proxy"),
        "{lines:?}"
    );
}

#[test]
fn the_user_ip_cap_sees_the_real_client_address() {
    let cluster = Cluster::start();
    let owner = cluster.owner("alice");
    let login = login_args("alice", "alice-pw");

    // MaxUserIpSessions.1 is 1 on every node: one session per client address.
    let mut a = cluster.connect_from([127, 0, 0, 2]);
    assert!(a.run("a", &login).starts_with("a OK"));
    let mut b = cluster.connect_from([127, 0, 0, 3]);
    assert!(b.run("b", &login).starts_with("b OK"));
    // Both connections come from nginx (127.0.0.1); the node counts the clients' addresses.
    let mut sessions = owner.who();
    sessions.sort();
    assert_eq!(
        sessions,
        [
            ("alice".to_string(), "127.0.0.2".to_string()),
            ("alice".to_string(), "127.0.0.3".to_string()),
        ]
    );

    // A second session from 127.0.0.2 replaces the first one from there, and only that one.
    let mut again = cluster.connect_from([127, 0, 0, 2]);
    assert!(again.run("c", &login).starts_with("c OK"));
    let bye = a.line();
    assert!(bye.starts_with("* BYE [LIMIT]"), "{bye}");
    assert!(a.closed());
    assert!(b.run("n", "NOOP").starts_with("n OK"));
    assert!(again.run("n", "NOOP").starts_with("n OK"));
}

/// Without nginx: a node whose `ProxyProtocolFrom.1` lists 127.0.0.1 requires a PROXY header
/// from there (v1 or v2), and reads none from other addresses.
#[test]
fn a_trusted_proxy_must_send_a_proxy_header() {
    let spool = Spool::new();
    spool.reg_set("ProxyProtocolFrom", "127.0.0.1");
    let server = spool.start();
    let who = || {
        spool
            .hato_ok(&["who"])
            .lines()
            .filter(|l| l.starts_with("alice "))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect::<Vec<_>>()
    };

    // Version 1, as nginx sends it.
    let mut stream = TcpStream::connect(server.imap).expect("connect");
    stream
        .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1143\r\n")
        .expect("send header");
    let mut v1 = Client::greeted(stream);
    assert!(v1.run("a", "LOGIN alice alice-pw").starts_with("a OK"));
    assert_eq!(who(), ["192.0.2.7"]);
    v1.run("z", "LOGOUT");

    // Version 2 (binary), as HAProxy sends it, for an IPv6 client.
    let client: std::net::Ipv6Addr = "2001:db8::9".parse().expect("ip");
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    header.extend_from_slice(&client.octets());
    header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    header.extend_from_slice(&[0x13, 0x88, 0x04, 0x77]);
    let mut stream = TcpStream::connect(server.imap).expect("connect");
    stream.write_all(&header).expect("send header");
    let mut v2 = Client::greeted(stream);
    assert!(v2.run("a", "LOGIN alice alice-pw").starts_with("a OK"));
    let seen = who();
    assert!(seen.contains(&"2001:db8::9".to_string()), "{seen:?}");
    v2.run("z", "LOGOUT");

    // No header: closed without a greeting.
    let mut stream = TcpStream::connect(server.imap).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(b"a CAPABILITY\r\n").expect("send");
    let mut rest = String::new();
    let _ = BufReader::new(stream).read_line(&mut rest);
    assert_eq!(rest, "", "a connection without a header was served");

    // Another address is not a proxy: it is greeted at once and counted as itself.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 5], 0)).into())
        .expect("bind");
    socket.connect(&server.imap.into()).expect("connect");
    let mut direct = Client::greeted(TcpStream::from(socket));
    assert!(direct.run("a", "LOGIN alice alice-pw").starts_with("a OK"));
    assert!(who().contains(&"127.0.0.5".to_string()));
}
