//! The runtime: worker threads, their io_uring rings, listeners and the connection driver.
//!
//! * [`worker`]: one pinned thread per core, each with its own tokio-uring ring, its own
//!   `SO_REUSEPORT` listener and its own `slab` of sessions; a session never leaves its worker.
//! * [`conn`]: the per-connection loop between a socket and its [`crate::imap::session::Session`].
//! * [`socket_io`]: readiness via io_uring `POLL_ADD`, then non-blocking `recv`/`send`.
//! * [`tls_io`]: TLS on that readiness-driven I/O (rustls, no thread of its own).
//! * [`idle`]: what reaches a waiting session: IDLE pushes, keepalives, timeouts.
//! * [`folder_watch`]: inotify on the folders IDLE sessions wait on, for writers outside hato.
//! * [`listener`]: binding the per-worker listeners.
//! * [`admission`]: process-wide session counts: `MaxSessions.1`, the user+IP cap and its
//!   evictions, login throttling per address.
//! * `compress_io`: COMPRESS=DEFLATE between the socket (or TLS) and the session.
//! * [`proxy_protocol`]: the PROXY header a trusted proxy (nginx) sends first, naming the
//!   client (`ProxyProtocolFrom.1`).
//! * [`shutdown`]: `SIGTERM`/`SIGINT` turned into a graceful stop of every worker.
//! * [`admin`]: the admin socket behind `hato who|kick|reload|stats`.
//! * [`privileges`]: started as root, becoming `RunAsUser.1` once the ports are bound.
//! * [`limits`]: the open-file limit, which bounds the sessions a process can hold.

pub mod admin;
mod admission;
mod conn;
mod folder_watch;
mod idle;
pub mod limits;
pub mod listener;
pub mod privileges;
mod proxy_protocol;

pub use folder_watch::FOLDER_EVENTS_METRIC;
mod compress_io;
pub mod shutdown;
mod socket_io;
mod tls_io;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use thiserror::Error;
use tracing::{info, warn};

use crate::auth::UserDirectory;
use crate::config::SharedSettings;
use crate::store::Store;
use worker::{Worker, WorkerSpec};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot listen for IMAP on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot start the metrics exporter on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: metrics_exporter_prometheus::BuildError,
    },
    #[error("cannot start worker {id}: {source}")]
    Spawn { id: usize, source: io::Error },
    #[error("worker {id} stopped: {source}")]
    Worker { id: usize, source: io::Error },
    #[error("worker {id} panicked")]
    Panicked { id: usize },
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
}

/// What `serve` needs; everything else comes from the settings snapshot.
pub struct ServeOptions {
    pub settings: SharedSettings,
    pub users: Arc<UserDirectory>,
    pub store: Arc<Store>,
    /// The TLS configuration (IMAPS is served when the settings name a certificate).
    pub tls: Arc<crate::tls::Tls>,
    /// Called once the listeners are bound, with the IMAP address and the IMAPS address (if
    /// any) actually bound.
    pub on_ready: Box<dyn FnOnce(SocketAddr, Option<SocketAddr>) + Send>,
    /// The blocked termination signals; with them, SIGTERM/SIGINT shut down gracefully.
    pub termination: Option<shutdown::Termination>,
    /// The spool whose `run/admin.sock` serves `hato who|kick|reload|stats` (none: no socket).
    pub admin_spool: Option<std::path::PathBuf>,
}

/// Number of workers for a `Workers.1` value (0 = one per available core).
pub fn worker_count(setting: usize) -> usize {
    if setting > 0 {
        return setting;
    }
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Slab slots to reserve per worker: its share of the session capacity, bounded so that a
/// huge open-file limit does not reserve absurd address space.
fn slab_capacity(capacity: u64, workers: usize) -> usize {
    const MAX_RESERVED: u64 = 1 << 22;
    let share = capacity / workers.max(1) as u64;
    usize::try_from(share.min(MAX_RESERVED)).unwrap_or(0)
}

/// With `RunAsUser.1` set and started as root: becomes that user, now that every port is bound
/// and before any session is served.
fn drop_root(
    settings: &crate::config::Settings,
    spool: Option<&std::path::Path>,
) -> Result<(), RuntimeError> {
    let Some(user) = &settings.run_as_user else {
        return Ok(());
    };
    if !privileges::is_root() {
        warn!(
            "RunAsUser.1 is {user:?} but hato was not started as root; it runs as it was started"
        );
        return Ok(());
    }
    let identity = privileges::resolve(user, settings.run_as_group.as_deref())?;
    let socket = spool.map(admin::socket_path);
    let hand_over: Vec<&std::path::Path> = socket
        .iter()
        .flat_map(|s| [s.parent(), Some(s.as_path())])
        .flatten()
        .filter(|p| p.exists())
        .collect();
    privileges::become_user(&identity, &hand_over)?;
    if let Some(spool) = spool {
        privileges::check_spool_owner(spool, &identity);
    }
    Ok(())
}

/// Starts the exporter, binds the listeners and runs the workers until the process ends.
pub fn serve(options: ServeOptions) -> Result<(), RuntimeError> {
    let settings = options.settings.load_full();
    let workers = worker_count(settings.workers);

    let capacity = match limits::raise_nofile_limit() {
        Ok(nofile) => nofile.saturating_sub(limits::RESERVED_FDS),
        Err(e) => {
            warn!("cannot raise the open-file limit: {e}");
            0
        }
    };

    crate::metrics::install_exporter(settings.metrics_listen).map_err(|source| {
        RuntimeError::Metrics {
            addr: settings.metrics_listen,
            source,
        }
    })?;
    metrics::gauge!(crate::metrics::WORKERS).set(workers as f64);
    let admission = Arc::new(admission::Admission::new(capacity));
    metrics::gauge!(crate::metrics::SESSION_CAPACITY).set(admission.cap(&settings) as f64);

    let listeners = listener::bind_reuseport(settings.imap_listen, workers).map_err(|source| {
        RuntimeError::Bind {
            addr: settings.imap_listen,
            source,
        }
    })?;
    let bound = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(settings.imap_listen);
    let mut tls_listeners: Vec<Option<std::net::TcpListener>> =
        (0..workers).map(|_| None).collect();
    let mut tls_bound = None;
    if options.tls.configured(&settings) {
        let bound_tls =
            listener::bind_reuseport(settings.imaps_listen, workers).map_err(|source| {
                RuntimeError::Bind {
                    addr: settings.imaps_listen,
                    source,
                }
            })?;
        tls_bound = bound_tls.first().and_then(|l| l.local_addr().ok());
        tls_listeners = bound_tls.into_iter().map(Some).collect();
        if let Some(addr) = tls_bound {
            info!("IMAPS on {addr}");
        }
    }
    info!(
        "IMAP on {bound}, {workers} workers, metrics on http://{}/metrics, session capacity {capacity} (open-file limit)",
        settings.metrics_listen
    );

    let mut notices = idle::Notices::new(workers);
    notices.install(&options.store);
    if let Some(spool) = &options.admin_spool
        && let Err(e) = admin::spawn(spool, notices.senders(), options.settings.clone())
    {
        warn!(
            "no admin socket at {}: {e}; hato who/kick/reload/stats will not work",
            admin::socket_path(spool).display()
        );
    }
    if let Some(termination) = options.termination {
        termination
            .watch(notices.senders(), options.settings.clone())
            .map_err(|source| RuntimeError::Spawn {
                id: workers,
                source,
            })?;
    }
    drop_root(&settings, options.admin_spool.as_deref())?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(workers);
    for (id, (listener, tls_listener)) in listeners.into_iter().zip(tls_listeners).enumerate() {
        let spec = WorkerSpec {
            id,
            listener,
            tls_listener,
            tls: options.tls.clone(),
            settings: options.settings.clone(),
            users: options.users.clone(),
            store: options.store.clone(),
            core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
            slab_capacity: slab_capacity(capacity, workers),
            notices: notices.take(id),
            admission: admission.clone(),
            senders: notices.senders(),
        };
        let handle = thread::Builder::new()
            .name(format!("hato-worker-{id}"))
            .spawn(move || Worker::run(spec))
            .map_err(|source| RuntimeError::Spawn { id, source })?;
        handles.push(handle);
    }
    (options.on_ready)(bound, tls_bound);

    for (id, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(RuntimeError::Worker { id, source }),
            Err(_) => return Err(RuntimeError::Panicked { id }),
        }
    }
    Ok(())
}
