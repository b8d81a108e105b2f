//! Metrics: the names hato exports and the Prometheus exporter that serves them.
//!
//! Hot paths never look a metric up by name: each worker registers its handles once
//! ([`WorkerMetrics`]) and then only does atomic updates. Labels are bounded: worker number,
//! command name from a fixed list, result; never a user name or address.

use std::net::SocketAddr;
use std::time::Instant;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

use crate::imap::{CommandName, Limit, NoopOutcome, Observer, Status};

pub const SESSIONS: &str = "hato_sessions";
pub const LOGINS: &str = "hato_logins_total";
pub const COMMANDS: &str = "hato_commands_total";
pub const COMMAND_DURATION: &str = "hato_command_duration_seconds";
pub const WORKERS: &str = "hato_workers";
pub const SESSION_CAPACITY: &str = "hato_session_capacity";
pub const IDLE_SESSIONS: &str = "hato_idle_sessions";
pub const IDLE_CHECKS: &str = "hato_idle_checks_total";
pub const BROADCAST_EVENTS: &str = "hato_broadcast_events_total";
pub const SESSIONS_CLOSED: &str = "hato_sessions_closed_total";
pub const MAILBOX_SCANS: &str = "hato_mailbox_scans_total";
pub const NOOPS: &str = "hato_noop_total";
pub const NOTIFY_LATENCY: &str = "hato_notify_latency_seconds";
pub const LIMIT_HITS: &str = "hato_limit_hits_total";
pub const TLS_HANDSHAKES: &str = "hato_tls_handshakes_total";
pub const SESSIONS_BY_STATE: &str = "hato_sessions_by_state";
pub const TLS_SESSIONS: &str = "hato_tls_sessions";
pub const OPEN_FDS: &str = "hato_process_open_fds";
pub const MAX_FDS: &str = "hato_process_max_fds";
pub const RESIDENT_MEMORY: &str = "hato_process_resident_memory_bytes";
pub const BUILD_INFO: &str = "hato_build_info";
pub const START_TIME: &str = "hato_process_start_time_seconds";

/// The session states of [`SESSIONS_BY_STATE`].
const STATES: [&str; 4] = ["not_authenticated", "authenticated", "selected", "idle"];

/// Latency buckets, in seconds: from 50 µs (an unchanged NOOP) to 10 s (a slow login).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Starts the Prometheus exporter on `addr` (its own thread, serving `/metrics`) and installs
/// it as the global recorder. Call before any worker starts.
pub fn install_exporter(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)?
        .install()?;
    describe();
    spawn_process_stats();
    Ok(())
}

/// How often the process gauges (descriptors, memory) are read.
const PROCESS_STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the thread that keeps the process gauges current: open descriptors against the
/// limit (sessions fail to be accepted when they meet) and resident memory.
fn spawn_process_stats() {
    let spawned = std::thread::Builder::new()
        .name("hato-procstats".into())
        .spawn(|| {
            let open = gauge!(OPEN_FDS);
            let max = gauge!(MAX_FDS);
            let rss = gauge!(RESIDENT_MEMORY);
            loop {
                if let Some(count) = open_fds() {
                    open.set(count as f64);
                }
                if let Ok(limit) = crate::runtime::limits::nofile_limit() {
                    max.set(limit as f64);
                }
                if let Some(bytes) = resident_bytes() {
                    rss.set(bytes as f64);
                }
                std::thread::sleep(PROCESS_STATS_EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the process statistics thread: {e}");
    }
}

/// Open descriptors of the process. Linux 6.2 and later report the count as the size of
/// `/proc/self/fd`, which costs a look at the descriptor table; listing the directory (the
/// fallback on older kernels) costs a name and a lookup per descriptor, which with a hundred
/// thousand sessions would be most of an idle server's CPU (two thirds of it already with 2,000).
fn open_fds() -> Option<u64> {
    match std::fs::metadata("/proc/self/fd") {
        Ok(meta) if meta.len() > 0 => Some(meta.len()),
        _ => std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
    }
}

/// The process's resident set, from `/proc/self/statm` (second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

fn describe() {
    crate::config::describe_reload_metrics();
    // Counters that only move on rare events start at zero, so that rate() and increase() see
    // their first event and dashboards show 0 rather than no data.
    for via in ["lmtp", "deliver"] {
        for result in ["ok", "failed"] {
            counter!(crate::lmtp::DELIVERIES, "via" => via, "result" => result).increment(0);
        }
    }
    counter!(crate::runtime::FOLDER_EVENTS_METRIC).increment(0);
    counter!(MAILBOX_SCANS).increment(0);
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label `version` is hato's version."
    );
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "When the process started, in seconds since the Unix epoch (restarts show as jumps)."
    );
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge!(START_TIME).set(started);
    describe_gauge!(SESSIONS, "Open IMAP sessions, by worker.");
    describe_counter!(
        LOGINS,
        "Login attempts (LOGIN and AUTHENTICATE), by result."
    );
    describe_counter!(COMMANDS, "IMAP commands answered, by command and result.");
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time from a command's last input line to its tagged answer, by command."
    );
    describe_gauge!(WORKERS, "Worker threads (one io_uring ring each).");
    describe_gauge!(IDLE_SESSIONS, "Sessions in IDLE on a mailbox, by worker.");
    describe_counter!(
        IDLE_CHECKS,
        "Mailboxes re-read by the IDLELoop check (per watched mailbox, not per session)."
    );
    describe_counter!(
        BROADCAST_EVENTS,
        "Mailbox change notices relayed to a worker's IDLE sessions."
    );
    describe_counter!(SESSIONS_CLOSED, "Sessions closed, by reason.");
    describe_histogram!(
        NOTIFY_LATENCY,
        Unit::Seconds,
        "From a mailbox change to its untagged response written to an IDLE session."
    );
    describe_counter!(
        MAILBOX_SCANS,
        "Full directory reads of a mailbox (file-system work a change or a first open costs)."
    );
    describe_counter!(
        NOOPS,
        "NOOP commands by outcome: unchanged (free), changed (changes reported), disabled (NOOPPoll.1=0)."
    );
    describe_counter!(
        LIMIT_HITS,
        "Protective limits hit, by limit (line_length, literal_size, bad_commands, pipelined, noop_rate, preauth_timeout, sessions, user_ip_evicted, user_ip_refused, auth_throttled)."
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes (IMAPS and STARTTLS), by result (ok, failed) and version (1.2, 1.3; none when failed)."
    );
    describe_gauge!(
        SESSIONS_BY_STATE,
        "Open sessions by worker and state (not_authenticated, authenticated, selected, idle), counted once a second."
    );
    describe_gauge!(
        TLS_SESSIONS,
        "Open sessions over TLS, by worker, counted once a second."
    );
    describe_gauge!(OPEN_FDS, "Open file descriptors of the process.");
    describe_gauge!(
        MAX_FDS,
        "The process's open-file limit (RLIMIT_NOFILE, soft)."
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the process (RSS)."
    );
    describe_gauge!(
        SESSION_CAPACITY,
        "Sessions the process accepts: MaxSessions.1 if set, else what its open-file limit allows."
    );
}

/// One worker's pre-registered metric handles.
pub struct WorkerMetrics {
    sessions: Gauge,
    logins_ok: Counter,
    logins_failed: Counter,
    /// `commands[name as usize][status]`.
    commands: Vec<[Counter; 3]>,
    /// `durations[name as usize]`.
    durations: Vec<Histogram>,
    idle_sessions: Gauge,
    /// unchanged, changed, disabled.
    noops: [Counter; 3],
    idle_checks: Counter,
    notify_latency: Histogram,
    broadcast_events: Counter,
    closed_timeout: Counter,
    closed_logout: Counter,
    closed_client: Counter,
    closed_evicted: Counter,
    closed_shutdown: Counter,
    closed_kicked: Counter,
    /// `limits[limit as usize]`.
    limits: [Counter; Limit::ALL.len()],
    /// TLS handshakes: ok with 1.3, ok with 1.2, ok with another version, failed.
    tls_handshakes: [Counter; 4],
    /// Sessions by state, in [`STATES`] order.
    states: [Gauge; 4],
    tls_sessions: Gauge,
    capacity: Gauge,
}

/// Sessions counted by state during a sweep.
#[derive(Debug, Default)]
pub struct StateCounts {
    by_state: [u64; 4],
    tls: u64,
}

impl StateCounts {
    /// Counts one session in `state` (a [`crate::imap::session::Session::state_label`]).
    pub fn count(&mut self, state: &str, tls: bool) {
        if let Some(i) = STATES.iter().position(|s| *s == state) {
            self.by_state[i] += 1;
        }
        self.tls += u64::from(tls);
    }
}

impl WorkerMetrics {
    pub fn new(worker: usize) -> WorkerMetrics {
        let commands = CommandName::ALL
            .iter()
            .map(|name| {
                [Status::Ok, Status::No, Status::Bad]
                    .map(|s| counter!(COMMANDS, "command" => name.as_str(), "result" => s.label()))
            })
            .collect();
        let durations = CommandName::ALL
            .iter()
            .map(|name| histogram!(COMMAND_DURATION, "command" => name.as_str()))
            .collect();
        WorkerMetrics {
            sessions: gauge!(SESSIONS, "worker" => worker.to_string()),
            logins_ok: counter!(LOGINS, "result" => "success"),
            logins_failed: counter!(LOGINS, "result" => "failure"),
            commands,
            durations,
            idle_sessions: gauge!(IDLE_SESSIONS, "worker" => worker.to_string()),
            noops: ["unchanged", "changed", "disabled"].map(|o| counter!(NOOPS, "outcome" => o)),
            idle_checks: counter!(IDLE_CHECKS),
            notify_latency: histogram!(NOTIFY_LATENCY),
            broadcast_events: counter!(BROADCAST_EVENTS),
            closed_timeout: counter!(SESSIONS_CLOSED, "reason" => "timeout"),
            closed_logout: counter!(SESSIONS_CLOSED, "reason" => "logout"),
            closed_client: counter!(SESSIONS_CLOSED, "reason" => "client"),
            closed_evicted: counter!(SESSIONS_CLOSED, "reason" => "evicted"),
            closed_shutdown: counter!(SESSIONS_CLOSED, "reason" => "shutdown"),
            closed_kicked: counter!(SESSIONS_CLOSED, "reason" => "kicked"),
            limits: Limit::ALL.map(|l| counter!(LIMIT_HITS, "limit" => l.label())),
            tls_handshakes: [
                ("ok", "1.3"),
                ("ok", "1.2"),
                ("ok", "other"),
                ("failed", "none"),
            ]
            .map(|(result, version)| {
                counter!(TLS_HANDSHAKES, "result" => result, "version" => version)
            }),
            states: STATES.map(|state| {
                gauge!(SESSIONS_BY_STATE, "worker" => worker.to_string(), "state" => state)
            }),
            tls_sessions: gauge!(TLS_SESSIONS, "worker" => worker.to_string()),
            capacity: gauge!(SESSION_CAPACITY),
        }
    }

    pub fn idle_sessions(&self, count: usize) {
        self.idle_sessions.set(count as f64);
    }

    pub fn idle_checks(&self, mailboxes: usize) {
        self.idle_checks.increment(mailboxes as u64);
    }

    pub fn notify_latency(&self, latency: std::time::Duration) {
        self.notify_latency.record(latency.as_secs_f64());
    }

    pub fn broadcast_event(&self) {
        self.broadcast_events.increment(1);
    }

    /// Counts a closed session by why it closed: `timeout`, `logout`, `evicted` (user+IP cap),
    /// `shutdown`, `kicked` (`hato kick`), or `client` (the client went away).
    pub fn session_closed_for(&self, reason: &'static str) {
        match reason {
            "timeout" => self.closed_timeout.increment(1),
            "logout" => self.closed_logout.increment(1),
            "evicted" => self.closed_evicted.increment(1),
            "shutdown" => self.closed_shutdown.increment(1),
            "kicked" => self.closed_kicked.increment(1),
            _ => self.closed_client.increment(1),
        }
    }

    /// Counts a finished TLS handshake: its version (`1.3`, `1.2`, `other`), or `None` when it
    /// failed.
    pub fn tls_handshake(&self, version: Option<&str>) {
        let i = match version {
            Some("1.3") => 0,
            Some("1.2") => 1,
            Some(_) => 2,
            None => 3,
        };
        self.tls_handshakes[i].increment(1);
    }

    /// Sets the per-state session gauges from a sweep's counts.
    pub fn sessions_by_state(&self, counts: &StateCounts) {
        for (gauge, count) in self.states.iter().zip(counts.by_state) {
            gauge.set(count as f64);
        }
        self.tls_sessions.set(counts.tls as f64);
    }

    /// The session cap in force (it follows `MaxSessions.1` live).
    pub fn session_capacity(&self, cap: u64) {
        self.capacity.set(cap as f64);
    }

    pub fn session_opened(&self) {
        self.sessions.increment(1.0);
    }

    pub fn session_closed(&self) {
        self.sessions.decrement(1.0);
    }
}

impl Observer for WorkerMetrics {
    fn command(&mut self, name: CommandName, status: Status, started: Instant) {
        let i = name as usize;
        let s = match status {
            Status::Ok => 0,
            Status::No => 1,
            Status::Bad => 2,
        };
        if let Some(counters) = self.commands.get(i) {
            counters[s].increment(1);
        }
        if let Some(h) = self.durations.get(i) {
            h.record(started.elapsed().as_secs_f64());
        }
    }

    fn noop(&mut self, outcome: NoopOutcome) {
        let i = match outcome {
            NoopOutcome::Unchanged => 0,
            NoopOutcome::Changed => 1,
            NoopOutcome::Disabled => 2,
        };
        self.noops[i].increment(1);
    }

    fn limit(&mut self, limit: Limit) {
        self.limits[limit as usize].increment(1);
    }

    fn login(&mut self, success: bool) {
        if success {
            self.logins_ok.increment(1);
        } else {
            self.logins_failed.increment(1);
        }
    }
}
