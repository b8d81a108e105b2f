//! `hato director`: the login router behind nginx's mail proxy, for sites with several hato
//! nodes.
//!
//! Each user belongs to one node: their Maildir is on that node's spool, and every session
//! they open lands there, so change generations, IDLE pushes and the user+IP cap stay local
//! to one process and no Maildir is ever written by two nodes. nginx's mail module accepts
//! the clients and, for each login, asks this director over HTTP (`auth_http`) whether the
//! password is right and where the user lives; it then logs in to that node with the
//! client's own credentials and relays the session.
//!
//! * [`auth_http`]: the protocol (the request nginx sends, the headers it understands).
//! * [`rendezvous`]: which node owns a user (highest-random-weight hashing on node names).
//! * This file: the listener, one short-lived thread per request, and the decision; failed
//!   logins are throttled per client address by the workers' policy ([`LoginFailures`]),
//!   answered with "ask again later" instead of a wait.
//!
//! The node list is `DirectorNodes.1` and the password check uses the passwd-file of the
//! director's spool (`PasswdFile.1`), both re-read live: a reload of the reg tree applies to
//! the next request, and the passwd-file is re-read when it changes. nginx opens a new
//! connection per login and the answer needs one password check, so plain threads serve it:
//! at most [`MAX_IN_FLIGHT`] requests at once (more get "ask again in a second" at once), and
//! at most one password check per core at a time (argon2 takes tens of milliseconds and
//! about 19 MiB each).
//!
//! A node marked `down` keeps its users (they are not moved to another node, whose spool does
//! not have their mail): their logins are refused with `[UNAVAILABLE]` and a wait, so clients
//! retry. A node that is down without being marked fails the same way, from nginx: it cannot
//! connect and the client gets an error and retries.

pub mod auth_http;
pub mod rendezvous;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, warn};

use crate::auth::throttle::LoginFailures;
use crate::auth::{AuthError, UserDirectory};
use crate::config::{DirectorNode, Settings, SharedSettings};
use auth_http::{Answer, AuthRequest};

/// Requests handled at once; nginx's requests are short, so more means an overload or an
/// attack, and the surplus is told to ask again.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Login attempts on one client connection after which a failure closes it (nginx keeps each
/// attempt's memory until the connection ends and asks for this after 10-20 attempts).
pub const MAX_ATTEMPTS: u32 = 10;

/// How long a request may take to arrive, and its answer to leave.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Stack of a request thread: parsing and a password check (argon2's memory is on the heap).
const THREAD_STACK: usize = 256 * 1024;

/// The `Auth-Status` texts; nginx sends them to the client after `<tag> NO `. The failed
/// login's is the one the nodes themselves use.
const FAILED: &str = "[AUTHENTICATIONFAILED] Authentication failed.";
const UNSUPPORTED_METHOD: &str =
    "[AUTHENTICATIONFAILED] Authentication method not supported, use LOGIN or PLAIN.";
const NOT_IMAP: &str = "This login service routes IMAP only.";
const DIRECTORY_DOWN: &str = "[UNAVAILABLE] The user database is unavailable, try again later.";
const NO_NODES: &str = "[UNAVAILABLE] No mail server is available, try again later.";
const NODE_DOWN: &str = "[UNAVAILABLE] Your mail server is under maintenance, try again later.";

/// How long a user of a node marked down waits between attempts: maintenance takes a while,
/// and a client told to retry every second would only add load.
const DOWN_WAIT_SECS: u64 = 5;

/// The SMTP code of refusals (nginx uses `Auth-Error-Code` only for SMTP; hato routes IMAP,
/// so an SMTP login is refused, and says so with "authentication credentials invalid").
const SMTP_REFUSED: &str = "535 5.7.8";

#[derive(Debug, Error)]
pub enum DirectorError {
    #[error("cannot listen for auth_http on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// The running director: settings, users, and its counts.
pub struct Director {
    settings: SharedSettings,
    users: Arc<UserDirectory>,
    throttle: LoginFailures,
    checks: Gate,
    in_flight: AtomicUsize,
}

impl Director {
    pub fn new(settings: SharedSettings, users: Arc<UserDirectory>) -> Director {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Director {
            settings,
            users,
            throttle: LoginFailures::new(),
            checks: Gate::new(cores),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Binds the listener.
    pub fn bind(addr: SocketAddr) -> Result<TcpListener, DirectorError> {
        TcpListener::bind(addr).map_err(|source| DirectorError::Bind { addr, source })
    }

    /// Answers requests on `listener` until the process ends.
    pub fn serve(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => self.dispatch(stream),
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!("auth_http accept failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Hands a connection to a thread of its own, or tells nginx to ask again when too many
    /// are in flight.
    fn dispatch(self: &Arc<Self>, stream: TcpStream) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            debug!("auth_http: {MAX_IN_FLIGHT} requests in flight; asking nginx to retry");
            reply(stream, &Answer::Retry { wait: 1 });
            return;
        }
        let director = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("hato-director".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                // Given back however the request ends (even by a panic).
                let _slot = InFlight(&director.in_flight);
                director.handle(stream);
            });
        if let Err(e) = spawned {
            // The connection went with the closure: nginx sees it close and the client gets
            // an error to retry after.
            warn!("auth_http: cannot start a thread: {e}");
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Reads one request, answers it, closes the connection.
    fn handle(&self, mut stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let request = loop {
            match auth_http::parse(&buf) {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(e) => {
                    debug!(?peer, "auth_http: bad request: {e}");
                    reply(stream, &Answer::BadRequest);
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(?peer, "auth_http: reading the request: {e}");
                    return;
                }
            }
        };
        // The password is not kept longer than needed.
        drop(buf);
        let fallback_ip = peer.map(|p| p.ip());
        let answer = self.answer(&request, fallback_ip, Instant::now());
        reply(stream, &answer);
    }

    /// The decision for one login. `peer` is the requester's address, used for throttling
    /// when nginx sent no `Client-IP`.
    pub fn answer(&self, request: &AuthRequest, peer: Option<IpAddr>, now: Instant) -> Answer {
        let settings = self.settings.load_full();
        let smtp = request.protocol == "smtp";
        if request.protocol != "imap" {
            return Answer::Refuse {
                status: NOT_IMAP,
                wait: None,
                smtp_code: smtp.then_some(SMTP_REFUSED),
            };
        }
        // After this many attempts a failure closes the client's connection.
        let retry = request.attempt < MAX_ATTEMPTS;
        let fail_wait = retry.then(|| whole_seconds(settings.auth_fail_delay));
        if request.method != "plain" {
            return Answer::Refuse {
                status: UNSUPPORTED_METHOD,
                wait: fail_wait,
                smtp_code: None,
            };
        }
        let client = request.client_ip.or(peer);
        let client_text = client.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        if let Some(ip) = client
            && let Some(wait) = self.throttle.try_attempt(ip, &settings, now)
        {
            debug!(client = %ip, "auth_http: address throttled; nginx asks again later");
            return Answer::Retry {
                wait: whole_seconds(wait),
            };
        }
        let checked = match std::str::from_utf8(&request.user) {
            Ok(user) => {
                let _slot = self.checks.enter();
                self.users.verify(user, &request.password)
            }
            // Not a name the passwd-file can hold; the same answer as any unknown user.
            Err(_) => Err(AuthError::InvalidCredentials),
        };
        let user = match checked {
            Ok(user) => user,
            Err(AuthError::InvalidCredentials) => {
                if let Some(ip) = client {
                    self.throttle.failed(ip, now);
                }
                info!(
                    user = %String::from_utf8_lossy(&request.user),
                    client = %client_text,
                    attempt = request.attempt,
                    "auth_http: login failed"
                );
                return Answer::Refuse {
                    status: FAILED,
                    wait: fail_wait,
                    smtp_code: None,
                };
            }
            Err(e) => {
                warn!("auth_http: user directory unavailable: {e}");
                return Answer::Refuse {
                    status: DIRECTORY_DOWN,
                    wait: retry.then_some(1),
                    smtp_code: None,
                };
            }
        };
        let Some(node) = owner(&settings, &user) else {
            warn!("auth_http: DirectorNodes.1 is empty; no node to send {user} to");
            return Answer::Refuse {
                status: NO_NODES,
                wait: retry.then_some(1),
                smtp_code: None,
            };
        };
        if node.down {
            info!(%user, node = %node.id(), "auth_http: the user's node is marked down");
            return Answer::Refuse {
                status: NODE_DOWN,
                wait: retry.then_some(DOWN_WAIT_SECS),
                smtp_code: None,
            };
        }
        debug!(%user, client = %client_text, node = %node.id(), "auth_http: routed");
        Answer::Route {
            server: node.addr.ip(),
            port: node.addr.port(),
        }
    }
}

/// The node of `DirectorNodes.1` that owns `user` (also for `hato director --owner`).
pub fn owner<'a>(settings: &'a Settings, user: &str) -> Option<&'a DirectorNode> {
    rendezvous::owner(&settings.director_nodes, DirectorNode::id, user)
}

/// A duration in whole seconds for nginx (`Auth-Wait`), rounded up and at least 1: nginx has
/// no finer unit, and 0 would close the client's connection instead of letting it retry.
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// Sends the answer and closes the connection (nginx reads until the end of the headers;
/// HTTP/1.0 without keep-alive ends with the connection).
fn reply(mut stream: TcpStream, answer: &Answer) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    if let Err(e) = stream.write_all(answer.to_http().as_bytes()) {
        debug!("auth_http: sending the answer: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One request in flight; counted down when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A counting gate: at most `max` holders at once; the others wait.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

struct GateSlot<'a>(&'a Gate);

impl Gate {
    fn new(max: usize) -> Gate {
        Gate {
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn enter(&self) -> GateSlot<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= self.max {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        GateSlot(self)
    }
}

impl Drop for GateSlot<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PasswdFile, Scheme};
    use crate::config::find;

    fn director(nodes: &str) -> (tempfile::TempDir, Director) {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = PasswdFile::new(dir.path().join("passwd"));
        passwd
            .add_user("alice", "alice pw%", Scheme::Plain)
            .expect("add alice");
        passwd
            .add_user("bob", "bob-pw", Scheme::Plain)
            .expect("add bob");
        let mut settings = Settings {
            auth_throttle_after: 2,
            auth_fail_delay: Duration::from_millis(1500),
            ..Settings::default()
        };
        let def = find("DirectorNodes").expect("setting");
        settings.apply(def, nodes).expect("nodes");
        let users = Arc::new(UserDirectory::new(passwd));
        (dir, Director::new(SharedSettings::new(settings), users))
    }

    fn login(user: &str, password: &str, attempt: u32) -> AuthRequest {
        AuthRequest {
            method: "plain".into(),
            user: user.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
            protocol: "imap".into(),
            attempt,
            client_ip: Some("192.0.2.7".parse().expect("ip")),
        }
    }

    const NODES: &str = "n1 10.0.0.11:143, n2 10.0.0.12:1143, n3 [fd00::13]:143";

    #[test]
    fn routes_to_the_owner() {
        let (_dir, d) = director(NODES);
        let settings = d.settings.load_full();
        for user in ["alice", "bob"] {
            let node = owner(&settings, user).expect("owner");
            let password = if user == "alice" {
                "alice pw%"
            } else {
                "bob-pw"
            };
            let answer = d.answer(&login(user, password, 1), None, Instant::now());
            assert_eq!(
                answer,
                Answer::Route {
                    server: node.addr.ip(),
                    port: node.addr.port()
                },
                "{user}"
            );
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_answer() {
        let (_dir, d) = director(NODES);
        let now = Instant::now();
        let wrong = d.answer(&login("alice", "nope", 1), None, now);
        let unknown = d.answer(&login("mallory", "nope", 1), None, now);
        let expected = Answer::Refuse {
            status: FAILED,
            wait: Some(2),
            smtp_code: None,
        };
        assert_eq!(wrong, expected);
        assert_eq!(unknown, expected);
        // Two failures from 192.0.2.7: its next check is spaced; nginx is asked to come back.
        assert_eq!(
            d.answer(&login("alice", "alice pw%", 1), None, now),
            Answer::Route {
                server: owner(&d.settings.load(), "alice").expect("owner").addr.ip(),
                port: owner(&d.settings.load(), "alice")
                    .expect("owner")
                    .addr
                    .port(),
            }
        );
        assert_eq!(
            d.answer(&login("alice", "alice pw%", 1), None, now),
            Answer::Retry { wait: 2 }
        );
        // Another client address is not held up.
        let mut elsewhere = login("bob", "bob-pw", 1);
        elsewhere.client_ip = Some("192.0.2.8".parse().expect("ip"));
        assert!(matches!(
            d.answer(&elsewhere, None, now),
            Answer::Route { .. }
        ));
    }

    #[test]
    fn too_many_attempts_close_the_connection() {
        let (_dir, d) = director(NODES);
        let answer = d.answer(&login("alice", "nope", MAX_ATTEMPTS), None, Instant::now());
        assert_eq!(
            answer,
            Answer::Refuse {
                status: FAILED,
                wait: None,
                smtp_code: None
            }
        );
    }

    #[test]
    fn other_protocols_and_methods_are_refused() {
        let (_dir, d) = director(NODES);
        let mut smtp = login("alice", "alice pw%", 1);
        smtp.protocol = "smtp".into();
        assert_eq!(
            d.answer(&smtp, None, Instant::now()),
            Answer::Refuse {
                status: NOT_IMAP,
                wait: None,
                smtp_code: Some(SMTP_REFUSED)
            }
        );
        let mut cram = login("alice", "alice pw%", 1);
        cram.method = "cram-md5".into();
        assert!(matches!(
            d.answer(&cram, None, Instant::now()),
            Answer::Refuse {
                status: UNSUPPORTED_METHOD,
                wait: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_node_marked_down_keeps_its_users() {
        let (_dir, up) = director(NODES);
        let settings = up.settings.load_full();
        let home = owner(&settings, "alice").expect("owner").clone();
        let marked = NODES.replace(&home.to_string(), &format!("{home} down"));
        let (_dir2, d) = director(&marked);
        let answer = d.answer(&login("alice", "alice pw%", 1), None, Instant::now());
        assert!(
            matches!(
                answer,
                Answer::Refuse {
                    status: NODE_DOWN,
                    wait: Some(5),
                    ..
                }
            ),
            "{answer:?}"
        );
    }

    #[test]
    fn no_nodes_is_a_temporary_failure() {
        let (_dir, d) = director("");
        let answer = d.answer(&login("alice", "alice pw%", 1), None, Instant::now());
        assert!(matches!(
            answer,
            Answer::Refuse {
                status: NO_NODES,
                ..
            }
        ));
    }

    #[test]
    fn waits_are_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(50)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn gate_bounds_holders() {
        let gate = Arc::new(Gate::new(2));
        let a = gate.enter();
        let _b = gate.enter();
        assert_eq!(*gate.busy.lock().expect("lock"), 2);
        let g = Arc::clone(&gate);
        let waiter = thread::spawn(move || {
            let _c = g.enter();
        });
        drop(a);
        waiter.join().expect("third holder got in");
    }
}
