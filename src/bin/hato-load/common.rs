//! What every scenario shares: the server and client-side options, how sessions are spread
//! over shards and users, a small random number generator, and number formatting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::procfs;
use crate::shard::ShardId;

/// Options of every scenario that talks IMAP.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The IMAP server.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1143")]
    pub imap: SocketAddr,
    /// The server's process id: its whole process tree is measured (memory, CPU). Without
    /// it, only client-side figures are reported.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The source address of shard 0's connections; shard i uses this address plus i
    /// (127.0.0.2, 127.0.0.3, ...). `none`: let the kernel choose.
    #[arg(long, default_value = "127.0.0.2")]
    pub source: Source,
    /// Client processes to spread the connections over (0: as few as the open-file limit
    /// allows).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// The numbered users are <PREFIX>1, <PREFIX>2, ...
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// Password of every user.
    #[arg(long, default_value = "benchpw")]
    pub password: String,
    /// Longest wait for any one step (connect, greeting, a command's answer), in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Name printed in front of the readable lines (e.g. the server's).
    #[arg(long, default_value = "server")]
    pub label: String,
}

impl Common {
    pub fn step_timeout(&self) -> Duration {
        seconds(self.timeout)
    }

    /// The address shard `me` binds its connections to.
    pub fn source_for(&self, me: ShardId) -> Option<IpAddr> {
        self.source.for_shard(me.index)
    }

    /// The shard count for `connections` connections: as asked, else enough processes that
    /// none needs more descriptors than the open-file limit allows (or more ports than one
    /// source address has).
    pub fn shard_count(&self, connections: usize) -> usize {
        if self.shards > 0 {
            return self.shards;
        }
        connections.div_ceil(per_process_capacity()).max(1)
    }

    /// The name of numbered user `n` (1-based).
    pub fn user(&self, n: usize) -> String {
        format!("{}{n}", self.user_prefix)
    }
}

/// Connections one client process holds at most: its open-file hard limit (the soft limit
/// is raised to it at start) minus room for the runtime and pipes, and no more than the
/// 28,232 ephemeral ports Linux gives one source address by default.
pub fn per_process_capacity() -> usize {
    let hard = procfs::nofile_limit().unwrap_or(1024) as usize;
    hard.saturating_sub(256).clamp(16, 28_000)
}

/// The `--source` option: a first IPv4 address, or no binding.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Kernel,
    From(Ipv4Addr),
}

impl Source {
    pub fn for_shard(self, index: usize) -> Option<IpAddr> {
        match self {
            Source::Kernel => None,
            Source::From(first) => {
                let n = u32::from(first).wrapping_add(index as u32);
                Some(IpAddr::V4(Ipv4Addr::from(n)))
            }
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Source, String> {
        if s == "none" {
            return Ok(Source::Kernel);
        }
        s.parse()
            .map(Source::From)
            .map_err(|_| format!("{s:?} is not an IPv4 address or `none`"))
    }
}

/// The global indices (0-based) of the `total` sessions, clients or deliveries that shard `me`
/// owns: every K-th one starting at its index, so a shard's share of the first n is the same
/// whatever n is (the idle checkpoints grow the same sessions).
pub fn strided(me: ShardId, total: usize) -> impl Iterator<Item = usize> {
    (me.index..total).step_by(me.count)
}

/// A `Duration` from (non-negative) seconds.
pub fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Milliseconds with three decimals, the unit of every latency figure.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// splitmix64: small, fast, good enough to spread phases and pick messages; seeded from the
/// OS so shards differ.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let mut seed = [0u8; 8];
        // A fixed seed is a fine fallback: only phases and picks depend on it.
        let _ = getrandom::getrandom(&mut seed);
        Rng(u64::from_le_bytes(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Fails unless `pid` names a live process (so a wrong `--pid` is caught before the run).
pub fn check_pid(pid: Option<u32>) -> Result<()> {
    if let Some(pid) = pid {
        procfs::cpu_ticks(pid).with_context(|| format!("server process {pid}"))?;
    }
    Ok(())
}

/// Runs `open(i)` for every index, at most `parallel` at once (a server accepts logins at a
/// finite rate; thousands at once would only measure its backlog), and returns the results in
/// completion order. The first failure fails the whole.
pub async fn open_all<T, F, Fut>(indices: Vec<usize>, parallel: usize, open: F) -> Result<Vec<T>>
where
    T: 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + 'static,
{
    let mut done = Vec::with_capacity(indices.len());
    let mut pending = indices.into_iter();
    let mut opening = tokio::task::JoinSet::new();
    loop {
        while opening.len() < parallel.max(1) {
            let Some(i) = pending.next() else { break };
            opening.spawn_local(open(i));
        }
        let Some(result) = opening.join_next().await else {
            break;
        };
        done.push(result.context("session task")??);
    }
    Ok(done)
}
