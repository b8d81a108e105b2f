//! One worker: a pinned thread with its own io_uring ring (tokio-uring), its own listener and
//! its own slab of sessions. Nothing here is shared with other workers except the read-only
//! settings snapshot and the user directory, so the command path takes no locks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::{Notify, Semaphore};
use tokio_uring::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::admission::{Admission, Admit, Member};
use super::compress_io::{self, Deflater, Inflater};
use super::idle::{self, Notice, Senders, WatchTable};
use super::tls_io::{self, Decrypted};
use super::{conn, proxy_protocol, socket_io};
use crate::auth::{AuthError, UserDirectory};
use crate::config::{Settings, SharedSettings};
use crate::imap::Limit;
use crate::imap::Observer;
use crate::imap::session::{AuthVerdict, Context, Credentials, Done, Session, Step, Work};
use crate::metrics::WorkerMetrics;
use crate::store::Store;
use crate::tls::Tls;

/// Bytes read from a socket at once; also the largest slice scanned without copying.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Plaintext decrypted from one read: the read's ciphertext plus the rest of a record rustls
/// held back from the read before (at most 16 KiB of plaintext and its overhead).
const PLAIN_BYTES: usize = SCRATCH_BYTES + 18 * 1024;

/// Password checks that may run at once per worker (argon2 takes ~20 MiB and tens of ms each).
const CONCURRENT_VERIFICATIONS: usize = 4;

/// Storage jobs that may run at once per worker on the blocking pool.
const CONCURRENT_WORK: usize = 32;

/// Everything a worker thread needs, built before the thread starts.
pub struct WorkerSpec {
    pub id: usize,
    pub listener: StdListener,
    /// The IMAPS (implicit TLS) listener, when a certificate is configured.
    pub tls_listener: Option<StdListener>,
    /// The shared TLS configuration.
    pub tls: Arc<Tls>,
    pub settings: SharedSettings,
    pub users: Arc<UserDirectory>,
    pub store: Arc<Store>,
    pub core: Option<core_affinity::CoreId>,
    /// Sessions this worker expects to hold at most (its share of the open-file limit).
    pub slab_capacity: usize,
    /// Notices for this worker: mailbox changes, evictions, shutdown.
    pub notices: Option<idle::WorkerNotices>,
    /// The process-wide session counts (caps, user+IP registry, login throttling).
    pub(crate) admission: Arc<Admission>,
    /// Every worker's notice channel (to evict a session held by another worker).
    pub(crate) senders: Senders,
}

/// A session and what the worker knows about its connection.
pub(crate) struct Slot {
    pub(crate) session: Session,
    pub(crate) peer: SocketAddr,
    /// The session's task while it waits for its client.
    waker: Option<Waker>,
    /// Pending [`idle::PUSH`] / [`idle::KEEPALIVE`] / [`idle::TIMEOUT`] bits.
    signal: u8,
    /// Worker clock (seconds) of the last input from the client and the last output to it.
    last_input: u32,
    last_output: u32,
    /// The mailbox (id) this session is registered as waiting on in IDLE.
    idle_on: Option<usize>,
    /// Process-wide number of this session (a slab key is reused; this is not).
    serial: u64,
    /// `NOOPRateLimit.1` pacing: when (µs on the worker clock) the session's polls would be
    /// due at the allowed rate. Polls more than a second ahead of it are delayed.
    poll_due: u64,
    /// The TLS state of an encrypted connection (IMAPS, or after STARTTLS).
    tls: Option<Box<rustls::ServerConnection>>,
}

/// What a read from the client gave.
pub(crate) enum Received {
    /// Nothing for the session (a spurious wake-up, or TLS handshake progress to send).
    Nothing,
    /// The client is gone (end of stream, or the TLS session ended or failed).
    Closed,
    /// The session handled input and says what comes next.
    Step(Step),
}

/// A worker's state, shared by its tasks (all on the worker's one thread).
pub(crate) struct Worker {
    pub(crate) id: usize,
    settings: SharedSettings,
    users: Arc<UserDirectory>,
    store: Arc<Store>,
    sessions: RefCell<Slab<Slot>>,
    /// Where received bytes land; scanned in place.
    pub(crate) scratch: RefCell<Box<[u8]>>,
    /// Where TLS sessions' plaintext lands; scanned in place.
    plain: RefCell<Box<[u8]>>,
    tls: Arc<Tls>,
    /// Where responses are built before they are sent.
    pub(crate) out: RefCell<Vec<u8>>,
    /// COMPRESS=DEFLATE: the inflaters of this worker's compressed sessions, by slab key. A
    /// side table, so that sessions without compression (nearly all) pay nothing in their
    /// slot; removed with the session.
    inflaters: RefCell<HashMap<usize, Box<Inflater>>>,
    /// The one deflater of the worker's compressed sessions, its scratch space, and where
    /// inflated input lands for the session to scan (see `compress_io`).
    deflater: RefCell<Deflater>,
    deflate_spare: RefCell<Vec<u8>>,
    inflated: RefCell<Box<[u8]>>,
    metrics: RefCell<WorkerMetrics>,
    watch: RefCell<WatchTable>,
    /// Start of this worker's coarse clock (seconds, for activity stamps).
    epoch: Instant,
    verifications: Semaphore,
    work_slots: Semaphore,
    admission: Arc<Admission>,
    senders: Senders,
    /// Set once a shutdown started; `stop` wakes the accept loop for it.
    stopping: Cell<bool>,
    stop: Notify,
}

/// The ring's setup flags. Only the worker thread submits to its ring, and it collects
/// completions whenever it wakes, so the kernel need not interrupt it with a signal to run
/// completion work (COOP_TASKRUN) nor guard against other submitters (SINGLE_ISSUER). Kernels
/// older than 6.0 refuse the flags; a probe ring tells.
fn ring_flags() -> io_uring::Builder {
    let mut cooperative = tokio_uring::uring_builder();
    cooperative.setup_coop_taskrun().setup_single_issuer();
    if cooperative.build(8).is_ok() {
        cooperative
    } else {
        tokio_uring::uring_builder()
    }
}

impl Worker {
    /// Runs the worker on the current thread until the process ends.
    pub fn run(spec: WorkerSpec) -> std::io::Result<()> {
        if let Some(core) = spec.core
            && !core_affinity::set_for_current(core)
        {
            warn!(worker = spec.id, "could not pin worker to core {}", core.id);
        }
        tokio_uring::builder()
            .entries(1024)
            .uring_builder(&ring_flags())
            .start(async move {
                let listener = TcpListener::from_std(spec.listener);
                let worker = Rc::new(Worker {
                    id: spec.id,
                    settings: spec.settings,
                    users: spec.users,
                    store: spec.store,
                    // Sized for the worker's share of the open-file limit up front: the memory is
                    // only reserved (pages are touched as sessions arrive), and the slab never
                    // pays for doubling copies or their slack.
                    sessions: RefCell::new(Slab::with_capacity(spec.slab_capacity)),
                    scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
                    plain: RefCell::new(vec![0u8; PLAIN_BYTES].into_boxed_slice()),
                    tls: spec.tls,
                    out: RefCell::new(Vec::with_capacity(SCRATCH_BYTES)),
                    inflaters: RefCell::new(HashMap::new()),
                    deflater: RefCell::new(Deflater::new()),
                    deflate_spare: RefCell::new(Vec::new()),
                    inflated: RefCell::new(vec![0u8; compress_io::CHUNK].into_boxed_slice()),
                    metrics: RefCell::new(WorkerMetrics::new(spec.id)),
                    watch: RefCell::new(WatchTable::new(
                        spec.notices.as_ref().and_then(|n| n.folders.clone()),
                    )),
                    epoch: Instant::now(),
                    verifications: Semaphore::new(CONCURRENT_VERIFICATIONS),
                    work_slots: Semaphore::new(CONCURRENT_WORK),
                    admission: spec.admission,
                    senders: spec.senders,
                    stopping: Cell::new(false),
                    stop: Notify::new(),
                });
                if let Some(notices) = spec.notices {
                    tokio_uring::spawn(idle::relay(worker.clone(), notices.receiver));
                }
                tokio_uring::spawn(idle::housekeeping(worker.clone()));
                let tls_listener = spec.tls_listener.map(TcpListener::from_std);
                worker.accept_until_stopped(listener, tls_listener).await;
                worker.drain().await;
                Ok(())
            })
    }

    /// Accepts connections on the IMAP listener and the IMAPS one (if any) until a shutdown
    /// starts.
    async fn accept_until_stopped(self: &Rc<Worker>, plain: TcpListener, tls: Option<TcpListener>) {
        let mut stopped = pin!(self.stop.notified());
        let mut plain_accept = Box::pin(plain.accept());
        let mut tls_accept = tls.as_ref().map(|l| Box::pin(l.accept()));
        loop {
            let accepted = poll_fn(|cx| {
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(r) = plain_accept.as_mut().poll(cx) {
                    return Poll::Ready(Some((r, false)));
                }
                if let Some(accept) = tls_accept.as_mut()
                    && let Poll::Ready(r) = accept.as_mut().poll(cx)
                {
                    return Poll::Ready(Some((r, true)));
                }
                Poll::Pending
            })
            .await;
            match accepted {
                None => return,
                Some((result, secure)) => {
                    if secure {
                        tls_accept = tls.as_ref().map(|l| Box::pin(l.accept()));
                    } else {
                        plain_accept = Box::pin(plain.accept());
                    }
                    self.accepted(result, secure).await;
                }
            }
        }
    }

    async fn accepted(
        self: &Rc<Worker>,
        result: std::io::Result<(TcpStream, SocketAddr)>,
        secure: bool,
    ) {
        {
            match result {
                Ok((stream, peer)) => self.admit(stream, peer, secure),
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!(worker = self.id, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Starts a session for a new connection (`secure`: on the IMAPS listener), or turns it
    /// away at `MaxSessions.1`.
    fn admit(self: &Rc<Worker>, stream: TcpStream, peer: SocketAddr, secure: bool) {
        debug!(worker = self.id, %peer, "connection accepted");
        let tls = if secure {
            match self.new_tls() {
                Some(conn) => Some(conn),
                None => {
                    // The certificate could not be loaded (the log says why).
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        } else {
            None
        };
        let settings = self.settings.load();
        let Some(serial) = self.admission.open(&settings) else {
            self.count_limit(Limit::Sessions);
            // A fresh socket has room for one line; if not, the client is gone anyway.
            let _ = socket_io::send(
                stream.as_raw_fd(),
                b"* BYE [LIMIT] Too many sessions on this server, try again later\r\n",
            );
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        if proxy_protocol::is_trusted(&settings.proxy_protocol_from, peer.ip()) {
            tokio_uring::spawn(self.clone().admit_proxied(stream, peer, serial, tls));
            return;
        }
        // The peer goes into the slab slot here, so that it is not part of the connection's
        // future.
        let key = self.open_session(peer, peer.ip().is_loopback(), serial, tls);
        tokio_uring::spawn(conn::serve(self.clone(), stream, key));
    }

    /// A connection from a proxy of `ProxyProtocolFrom.1`: its PROXY header names the client,
    /// whose address then stands for the peer everywhere (user+IP cap, login throttling,
    /// logs, `hato who`). No header (in time), or a bad one, closes the connection before the
    /// greeting. The session starts in a task of its own, so its future is the same size as
    /// any other's.
    async fn admit_proxied(
        self: Rc<Worker>,
        stream: TcpStream,
        proxy: SocketAddr,
        serial: u64,
        tls: Option<Box<rustls::ServerConnection>>,
    ) {
        let read = tokio::time::timeout(
            proxy_protocol::HEADER_TIMEOUT,
            proxy_protocol::read_header(stream.as_raw_fd()),
        )
        .await;
        let header = read.unwrap_or(Err(proxy_protocol::ProxyError::Timeout));
        match header {
            Ok(header) if !self.stopping.get() => {
                let client = header
                    .source
                    .map_or(proxy, |a| SocketAddr::new(a.ip().to_canonical(), a.port()));
                debug!(worker = self.id, %proxy, %client, "proxied connection");
                // Whether a password may cross the link in clear depends on the link itself,
                // the proxy's connection, not on where the client is.
                let key = self.open_session(client, proxy.ip().is_loopback(), serial, tls);
                tokio_uring::spawn(conn::serve(self, stream, key));
            }
            Ok(_) => {
                // A shutdown started meanwhile; the proxy sees the connection close.
                let _ = stream.shutdown(Shutdown::Both);
                self.admission.close();
            }
            Err(e) => {
                warn!(worker = self.id, %proxy, "connection from a trusted proxy closed: {e}");
                // Also ends a readiness wait still in flight (after a timeout).
                let _ = stream.shutdown(Shutdown::Both);
                self.admission.close();
            }
        }
    }

    /// A TLS server connection with the configuration in force, or `None` without one (the
    /// failed handshake is counted).
    fn new_tls(&self) -> Option<Box<rustls::ServerConnection>> {
        let made = self
            .tls
            .config()
            .map(rustls::ServerConnection::new)
            .and_then(Result::ok);
        let Some(mut conn) = made else {
            self.metrics.borrow().tls_handshake(None);
            return None;
        };
        // Answers are flushed as the socket takes them; the session never writes more than
        // one turn's worth before that.
        conn.set_buffer_limit(None);
        Some(Box::new(conn))
    }

    /// After the `OK` to STARTTLS went out: the connection is TLS from now on. False when no
    /// certificate is loaded any more (the connection is closed).
    pub(crate) fn start_tls(&self, key: usize) -> bool {
        let Some(conn) = self.new_tls() else {
            return false;
        };
        match self.sessions.borrow_mut().get_mut(key) {
            Some(slot) => {
                slot.tls = Some(conn);
                true
            }
            None => false,
        }
    }

    /// Whether the session's connection is TLS.
    fn is_tls(&self, key: usize) -> bool {
        self.sessions
            .borrow()
            .get(key)
            .is_some_and(|slot| slot.tls.is_some())
    }

    /// Sends what the session wrote into the output buffer: as it is, or encrypted.
    pub(crate) async fn send(&self, key: usize, fd: RawFd) -> std::io::Result<()> {
        self.deflate_output(key)?;
        if !self.is_tls(key) {
            return socket_io::send_all(fd, &self.out).await;
        }
        if self.send_tls_now(key, fd)? {
            return Ok(());
        }
        // The socket is full: wait for room (boxed: rare, and not part of every session).
        Box::pin(async move {
            loop {
                socket_io::writable(fd).await?;
                if self.send_tls_now(key, fd)? {
                    return Ok(());
                }
            }
        })
        .await
    }

    /// Encrypts the output buffer into the session's TLS connection and writes what the
    /// socket takes; true when everything went.
    fn send_tls_now(&self, key: usize, fd: RawFd) -> std::io::Result<bool> {
        let mut sessions = self.sessions.borrow_mut();
        let Some(conn) = sessions
            .get_mut(key)
            .and_then(|slot| slot.tls.as_deref_mut())
        else {
            self.out.borrow_mut().clear();
            return Ok(true);
        };
        let mut out = self.out.borrow_mut();
        tls_io::seal(conn, &mut out)?;
        if out.capacity() > 4 * SCRATCH_BYTES {
            // A large FETCH over TLS passed through here; do not keep its size for good.
            out.shrink_to(SCRATCH_BYTES);
        }
        drop(out);
        tls_io::flush(conn, fd)
    }

    /// Keeps the session's answers back while it is paced, out of the shared output buffer
    /// (which other sessions use meanwhile): plain answers are returned, TLS ones go into the
    /// session's own TLS buffer.
    pub(crate) fn hold_output(&self, key: usize) -> Option<Vec<u8>> {
        if self.deflate_output(key).is_err() {
            return None;
        }
        let mut sessions = self.sessions.borrow_mut();
        match sessions
            .get_mut(key)
            .and_then(|slot| slot.tls.as_deref_mut())
        {
            Some(conn) => {
                let mut out = self.out.borrow_mut();
                if tls_io::seal(conn, &mut out).is_err() {
                    out.clear();
                }
                None
            }
            None => Some(self.out.borrow_mut().split_off(0)),
        }
    }

    /// Ends a TLS session properly (close_notify), as far as the socket takes it now. A
    /// handshake the client abandoned counts as failed (a failed one was counted already and
    /// its connection state dropped).
    pub(crate) fn close_tls(&self, key: usize, fd: RawFd) {
        let mut sessions = self.sessions.borrow_mut();
        if let Some(conn) = sessions
            .get_mut(key)
            .and_then(|slot| slot.tls.as_deref_mut())
        {
            if conn.is_handshaking() {
                self.metrics.borrow().tls_handshake(None);
                return;
            }
            conn.send_close_notify();
            let _ = tls_io::flush(conn, fd);
        }
    }

    /// Reads what the client sent (decrypting it on a TLS connection) and hands it to the
    /// session.
    pub(crate) fn receive(&self, key: usize, fd: RawFd) -> std::io::Result<Received> {
        let mut scratch = self.scratch.borrow_mut();
        let n = match socket_io::recv(fd, &mut scratch) {
            Ok(0) => return Ok(Received::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Received::Nothing),
            Err(e) => return Err(e),
        };
        let cipher = &scratch[..n];
        let mut plain = self.plain.borrow_mut();
        let decrypted = {
            let mut sessions = self.sessions.borrow_mut();
            match sessions
                .get_mut(key)
                .and_then(|slot| slot.tls.as_deref_mut())
            {
                None => None,
                Some(conn) => {
                    let handshaking = conn.is_handshaking();
                    let result = tls_io::decrypt(conn, cipher, &mut plain);
                    if handshaking {
                        match &result {
                            Decrypted::Failed(e) => {
                                debug!(worker = self.id, "TLS handshake failed: {e}");
                                self.metrics.borrow().tls_handshake(None);
                            }
                            _ if !conn.is_handshaking() => {
                                let version = conn.protocol_version().map(tls_version);
                                self.metrics
                                    .borrow()
                                    .tls_handshake(Some(version.unwrap_or("other")));
                            }
                            _ => {}
                        }
                    }
                    if let Decrypted::Failed(_) = result {
                        // Tell the client why, if the socket takes it now; the TLS state is
                        // of no more use.
                        let _ = tls_io::flush(conn, fd);
                        if let Some(slot) = sessions.get_mut(key) {
                            slot.tls = None;
                        }
                    }
                    Some(result)
                }
            }
        };
        let input = match decrypted {
            None => cipher,
            Some(Decrypted::Plain(0)) => return Ok(Received::Nothing),
            Some(Decrypted::Plain(m)) => &plain[..m],
            Some(Decrypted::Closed | Decrypted::Failed(_)) => return Ok(Received::Closed),
        };
        if self.is_compressed(key) {
            self.touch_input(key);
            return Ok(match self.inflate_into_session(key, input)? {
                Some(step) => Received::Step(step),
                None => Received::Nothing,
            });
        }
        let step = self.with_session(key, |session, ctx, out| session.on_input(input, ctx, out));
        self.touch_input(key);
        Ok(Received::Step(step.unwrap_or(Step::Close)))
    }

    /// Whether COMPRESS=DEFLATE is on for the session (its `OK` was sent).
    fn is_compressed(&self, key: usize) -> bool {
        let inflaters = self.inflaters.borrow();
        !inflaters.is_empty() && inflaters.contains_key(&key)
    }

    /// Turns COMPRESS=DEFLATE on for the session, once its `OK` went out uncompressed.
    pub(crate) fn start_compress(&self, key: usize) {
        if self.sessions.borrow().contains(key) {
            self.inflaters.borrow_mut().insert(key, Inflater::new());
        }
    }

    /// A compressed session's input still inside its inflater (the session stopped taking
    /// input before the last read was used up): handed to it before waiting for more.
    /// `None` when there is none (or the session is not compressed).
    pub(crate) fn resume_compressed(&self, key: usize) -> std::io::Result<Option<Step>> {
        if !self.is_compressed(key) {
            return Ok(None);
        }
        self.inflate_into_session(key, &[])
    }

    /// Inflates `input` (after what was kept from before) and hands it to the session a chunk
    /// at a time, for as long as the session takes input; what it does not take is kept.
    /// Returns the session's last step, `None` if no input came out. A corrupt stream is an
    /// error that ends the connection.
    fn inflate_into_session(&self, key: usize, input: &[u8]) -> std::io::Result<Option<Step>> {
        let Some(mut inflater) = self.inflaters.borrow_mut().remove(&key) else {
            return Ok(Some(Step::Close));
        };
        let kept = inflater.take_unread();
        let joined: Vec<u8>;
        let mut rest: &[u8] = if kept.is_empty() {
            input
        } else {
            joined = [&kept[..], input].concat();
            &joined
        };
        let mut chunk = self.inflated.borrow_mut();
        let mut step = None;
        let result = loop {
            let (used, made) = match inflater.inflate(rest, &mut chunk) {
                Ok(counts) => counts,
                Err(e) => break Err(e),
            };
            rest = &rest[used..];
            if made > 0 {
                let next = self
                    .with_session(key, |session, ctx, out| {
                        session.on_input(&chunk[..made], ctx, out)
                    })
                    .unwrap_or(Step::Close);
                let more = next == Step::NeedInput;
                step = Some(next);
                if !more {
                    break Ok(());
                }
            } else if used == 0 {
                break Ok(());
            }
        };
        inflater.keep(rest);
        self.inflaters.borrow_mut().insert(key, inflater);
        result.map(|()| step)
    }

    /// Compresses the output buffer for a compressed session (before TLS, if any).
    fn deflate_output(&self, key: usize) -> std::io::Result<()> {
        if !self.is_compressed(key) {
            return Ok(());
        }
        let mut out = self.out.borrow_mut();
        let mut spare = self.deflate_spare.borrow_mut();
        let packed = self.deflater.borrow_mut().deflate(&mut out, &mut spare);
        if spare.capacity() > 4 * SCRATCH_BYTES {
            // A large FETCH passed through; do not keep its size for good.
            spare.shrink_to(SCRATCH_BYTES);
        }
        if packed.is_err() {
            out.clear();
        }
        packed
    }

    /// After the accept loop stopped: waits for the sessions (told to close) to finish, for at
    /// most `ShutdownGrace.1`.
    async fn drain(&self) {
        let grace = self.settings.load().shutdown_grace;
        let started = Instant::now();
        while !self.sessions.borrow().is_empty() && started.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.sessions.borrow().len();
        if left > 0 {
            warn!(
                worker = self.id,
                "shutdown: {left} sessions still busy after the grace time"
            );
        }
    }

    /// `peer` is the client's address (from a PROXY header when proxied); `loopback` says
    /// whether the connection itself comes from a loopback address (`PlaintextAuth.1`).
    pub(crate) fn open_session(
        &self,
        peer: SocketAddr,
        loopback: bool,
        serial: u64,
        tls: Option<Box<rustls::ServerConnection>>,
    ) -> usize {
        self.metrics.borrow().session_opened();
        let now = self.now();
        let session = Session::on_link(tls.is_some(), loopback);
        self.sessions.borrow_mut().insert(Slot {
            session,
            peer,
            waker: None,
            signal: 0,
            last_input: now,
            last_output: now,
            idle_on: None,
            serial,
            poll_due: 0,
            tls,
        })
    }

    /// Closes the session at `key` if it is still the one numbered `serial` (a newer session
    /// of its user and address was admitted).
    pub(crate) fn evict(&self, key: usize, serial: u64) {
        let current = self.sessions.borrow().get(key).map(|slot| slot.serial);
        if current == Some(serial) {
            self.signal(key, idle::EVICT);
        }
    }

    /// What `hato who` shows of this worker's sessions.
    pub(crate) fn sessions_info(&self) -> Vec<super::admin::SessionInfo> {
        let now = self.now();
        self.sessions
            .borrow()
            .iter()
            .map(|(_, slot)| super::admin::SessionInfo {
                worker: self.id,
                user: slot.session.user().map(str::to_string),
                peer: slot.peer,
                state: slot.session.state_label(),
                tls: slot.tls.is_some(),
                idle_secs: now.saturating_sub(slot.last_input),
                mailbox: slot.session.selected_mailbox().map(str::to_string),
            })
            .collect()
    }

    /// Closes the sessions of `user` (from `ip` only, if given); returns how many.
    pub(crate) fn kick(&self, user: &str, ip: Option<std::net::IpAddr>) -> usize {
        let keys: Vec<usize> = self
            .sessions
            .borrow()
            .iter()
            .filter(|(_, slot)| {
                slot.session.user() == Some(user) && ip.is_none_or(|ip| slot.peer.ip() == ip)
            })
            .map(|(key, _)| key)
            .collect();
        for &key in &keys {
            self.signal(key, idle::KICK);
        }
        keys.len()
    }

    /// Starts the shutdown: no more connections, every session is told to close.
    pub(crate) fn shut_down(&self) {
        if self.stopping.replace(true) {
            return;
        }
        info!(worker = self.id, "shutting down");
        self.stop.notify_one();
        let keys: Vec<usize> = self.sessions.borrow().iter().map(|(key, _)| key).collect();
        for key in keys {
            self.signal(key, idle::SHUTDOWN);
        }
    }

    /// How long to hold back the answers of a session that just polled (NOOP/CHECK) faster than
    /// `NOOPRateLimit.1`: a burst of a second's worth goes through, then the session is paced
    /// at the limit. Delaying the answer is what slows a client that waits for it.
    pub(crate) fn poll_delay(&self, key: usize) -> Option<Duration> {
        const BURST_US: u64 = 1_000_000;
        let rate = self.settings.load().noop_rate_limit;
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut sessions = self.sessions.borrow_mut();
        let slot = sessions.get_mut(key)?;
        let polls = u64::from(slot.session.take_polls());
        if polls == 0 || rate == 0 {
            return None;
        }
        let interval = 1_000_000 / rate.max(1);
        slot.poll_due = slot.poll_due.max(now) + interval * polls;
        let ahead = slot.poll_due - now;
        (ahead > BURST_US).then(|| Duration::from_micros(ahead - BURST_US))
    }

    pub(crate) fn count_limit(&self, limit: Limit) {
        self.metrics.borrow_mut().limit(limit);
    }

    /// Seconds on this worker's coarse clock.
    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    pub(crate) fn watch_table(&self) -> std::cell::Ref<'_, WatchTable> {
        self.watch.borrow()
    }

    /// Sets signal bits on a session and wakes its task.
    pub(crate) fn signal(&self, key: usize, bits: u8) {
        let waker = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(slot) = sessions.get_mut(key) else {
                return;
            };
            slot.signal |= bits;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes the pending signal bits of a session, or parks its task's waker when there are
    /// none.
    pub(crate) fn take_signal_or_park(&self, key: usize, waker: &Waker) -> u8 {
        let mut sessions = self.sessions.borrow_mut();
        let Some(slot) = sessions.get_mut(key) else {
            return idle::TIMEOUT;
        };
        if slot.signal != 0 {
            return std::mem::take(&mut slot.signal);
        }
        match &slot.waker {
            Some(parked) if parked.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
        0
    }

    /// The client sent something.
    pub(crate) fn touch_input(&self, key: usize) {
        let now = self.now();
        if let Some(slot) = self.sessions.borrow_mut().get_mut(key) {
            slot.last_input = now;
        }
    }

    /// Something was sent to the client.
    pub(crate) fn touch_output(&self, key: usize) {
        let now = self.now();
        if let Some(slot) = self.sessions.borrow_mut().get_mut(key) {
            slot.last_output = now;
        }
    }

    /// Registers or unregisters the session in the watch table to match whether it is in
    /// IDLE with a mailbox. A new registration is pushed once at once, for changes made
    /// between the session's last answer and the registration.
    pub(crate) fn reconcile_idle(&self, key: usize) {
        let (want, have) = {
            let sessions = self.sessions.borrow();
            let Some(slot) = sessions.get(key) else {
                return;
            };
            (slot.session.idle_mailbox().cloned(), slot.idle_on)
        };
        if want.as_ref().map(|m| m.id()) == have {
            return;
        }
        {
            let mut table = self.watch.borrow_mut();
            if let Some(old) = have {
                table.remove(self.id, old, key);
            }
            if let Some(mailbox) = &want {
                table.add(self.id, mailbox, key);
            }
            self.metrics.borrow().idle_sessions(table.session_count());
        }
        if let Some(slot) = self.sessions.borrow_mut().get_mut(key) {
            slot.idle_on = want.as_ref().map(|m| m.id());
        }
        if want.is_some() {
            self.signal(key, idle::PUSH);
        }
    }

    /// Marks sessions due a keepalive (in IDLE, nothing sent for `IdleKeepalive.1`) or a
    /// timeout (no client traffic for `PreauthTimeout.1` before login, the session timeout
    /// after).
    pub(crate) fn sweep(&self, settings: &Settings) {
        let now = self.now();
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let keepalive = secs(settings.idle_keepalive);
        let timeout = secs(settings.session_timeout());
        let preauth = secs(settings.preauth_timeout);
        let mut due = Vec::new();
        let mut states = crate::metrics::StateCounts::default();
        for (key, slot) in self.sessions.borrow().iter() {
            states.count(slot.session.state_label(), slot.tls.is_some());
            let limit = if slot.session.user().is_some() {
                timeout
            } else {
                preauth
            };
            if now.saturating_sub(slot.last_input) >= limit {
                due.push((key, idle::TIMEOUT));
            } else if slot.session.is_idling() && now.saturating_sub(slot.last_output) >= keepalive
            {
                due.push((key, idle::KEEPALIVE));
            }
        }
        let metrics = self.metrics.borrow();
        metrics.sessions_by_state(&states);
        metrics.session_capacity(self.admission.cap(settings));
        drop(metrics);
        for (key, bits) in due {
            self.signal(key, bits);
        }
    }

    pub(crate) fn record_notify_latency(&self, latency: std::time::Duration) {
        self.metrics.borrow().notify_latency(latency);
    }

    pub(crate) fn count_broadcast(&self) {
        self.metrics.borrow().broadcast_event();
    }

    pub(crate) fn count_idle_checks(&self, mailboxes: usize) {
        self.metrics.borrow().idle_checks(mailboxes);
    }

    pub(crate) fn count_closed(&self, reason: &'static str) {
        self.metrics.borrow().session_closed_for(reason);
    }

    /// Removes the session; returns the peer it served.
    pub(crate) fn close_session(&self, key: usize) -> Option<SocketAddr> {
        let slot = self.sessions.borrow_mut().try_remove(key)?;
        self.inflaters.borrow_mut().remove(&key);
        self.admission.close();
        if let Some(user) = slot.session.user() {
            let member = self.member(key, slot.serial);
            self.admission.logout(user, slot.peer.ip(), member);
        }
        if let Some(mailbox) = slot.idle_on {
            let mut table = self.watch.borrow_mut();
            table.remove(self.id, mailbox, key);
            self.metrics.borrow().idle_sessions(table.session_count());
        }
        self.metrics.borrow().session_closed();
        Some(slot.peer)
    }

    /// Runs `f` on a session with the current settings, the metrics observer and the output
    /// buffer. Never held across an await.
    pub(crate) fn with_session<R>(
        &self,
        key: usize,
        f: impl FnOnce(&mut Session, &mut Context<'_>, &mut Vec<u8>) -> R,
    ) -> Option<R> {
        let settings = self.settings.load();
        let mut metrics = self.metrics.borrow_mut();
        let mut ctx = Context {
            settings: &settings,
            observer: &mut *metrics,
            store: &self.store,
            tls_available: self.tls.available(),
        };
        let mut sessions = self.sessions.borrow_mut();
        let session = &mut sessions.get_mut(key)?.session;
        let mut out = self.out.borrow_mut();
        Some(f(session, &mut ctx, &mut out))
    }

    /// Runs a session's storage work on the blocking pool (file-system calls would stall every
    /// session of this worker if they ran on its thread).
    /// `fd` is the session's socket, for work that streams a large answer (the session is
    /// paused meanwhile, so nothing else writes to it).
    /// On a TLS connection the streamed part is collected instead (it must be encrypted on
    /// this thread) and left in the output buffer, ahead of the answers the `Done` writes.
    pub(crate) async fn run_work(&self, key: usize, work: Work, fd: RawFd) -> Option<Done> {
        // The semaphore is never closed, so acquire only fails if it were; treat as busy.
        let _slot = self.work_slots.acquire().await.ok();
        // TLS and compressed sessions collect the answer, which is then sealed or deflated
        // on the worker with the rest of the output.
        let streamed = if self.is_tls(key) || self.is_compressed(key) {
            tokio::task::spawn_blocking(move || {
                let mut collected = Vec::new();
                let done = work.run(&mut collected);
                (done, collected)
            })
            .await
        } else {
            let run = move || (work.run(&mut socket_io::BlockingSink::new(fd)), Vec::new());
            tokio::task::spawn_blocking(run).await
        };
        match streamed {
            Ok((done, collected)) => {
                self.out.borrow_mut().extend_from_slice(&collected);
                Some(done)
            }
            Err(e) => {
                warn!(worker = self.id, "storage work failed to run: {e}");
                None
            }
        }
    }

    fn member(&self, key: usize, serial: u64) -> Member {
        Member {
            worker: self.id,
            key,
            serial,
        }
    }

    /// Checks the credentials of session `key` on the blocking pool (after the wait its
    /// address owes if it keeps failing), delays a failure (without blocking the worker) so
    /// password guessing is slow, and applies the user+IP cap to a success.
    pub(crate) async fn verify(&self, key: usize, credentials: Credentials) -> AuthVerdict {
        let Some((ip, serial)) = self
            .sessions
            .borrow()
            .get(key)
            .map(|slot| (slot.peer.ip(), slot.serial))
        else {
            return AuthVerdict::Unavailable;
        };
        let wait = self.admission.attempt_delay(ip, &self.settings.load());
        if !wait.is_zero() {
            self.count_limit(Limit::AuthThrottled);
            tokio::time::sleep(wait).await;
        }
        let verdict = {
            // The semaphore is never closed, so acquire only fails if it were; treat as busy.
            let _permit = self.verifications.acquire().await.ok();
            let users = self.users.clone();
            let checked = tokio::task::spawn_blocking(move || {
                users.verify(&credentials.user, &credentials.password)
            })
            .await;
            match checked {
                Ok(Ok(user)) => AuthVerdict::Accepted(user),
                Ok(Err(AuthError::InvalidCredentials)) => AuthVerdict::Rejected,
                Ok(Err(e)) => {
                    warn!(worker = self.id, "user directory unavailable: {e}");
                    AuthVerdict::Unavailable
                }
                Err(e) => {
                    warn!(worker = self.id, "password check failed to run: {e}");
                    AuthVerdict::Unavailable
                }
            }
        };
        match verdict {
            AuthVerdict::Rejected => {
                self.admission.failed(ip);
                let delay = self.settings.load().auth_fail_delay;
                tokio::time::sleep(delay).await;
                verdict
            }
            AuthVerdict::Accepted(user) => {
                let member = self.member(key, serial);
                match self
                    .admission
                    .login(&user, ip, member, &self.settings.load())
                {
                    Admit::Admitted => AuthVerdict::Accepted(user),
                    Admit::Evict(oldest) => {
                        self.count_limit(Limit::UserIpEvicted);
                        if oldest.worker == self.id {
                            self.evict(oldest.key, oldest.serial);
                        } else {
                            self.senders.send(
                                oldest.worker,
                                Notice::Evict {
                                    key: oldest.key,
                                    serial: oldest.serial,
                                },
                            );
                        }
                        AuthVerdict::Accepted(user)
                    }
                    Admit::Refused => {
                        self.count_limit(Limit::UserIpRefused);
                        AuthVerdict::Limited
                    }
                }
            }
            other => other,
        }
    }
}

/// The metric label of a TLS version.
fn tls_version(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "1.3",
        rustls::ProtocolVersion::TLSv1_2 => "1.2",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;

    /// An idle session costs its slot plus its task; keep the slot within budget (232 B since
    /// the hardening limits added the session serial, the poll pacing and two tallies, and
    /// TLS its pointer).
    #[test]
    fn slot_size_stays_small() {
        let size = std::mem::size_of::<Slot>();
        println!("slab slot: {size} bytes");
        assert!(size <= 232, "a session's slab slot grew to {size} bytes");
    }
}
