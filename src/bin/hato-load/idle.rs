//! Scenario `idle`: memory per idle session, and CPU while sessions idle.
//!
//! Sessions log in and select INBOX (with `--idle`, then enter IDLE) and are simply held. The
//! server's memory (PSS by default, summed over its process tree) is read at two checkpoints,
//! FROM and TO sessions, after letting it settle; the marginal cost per session is the slope
//! between them, which cancels fixed costs (threads, rings, allocator arenas, Dovecot's
//! master and login processes). Then, with TO sessions open, the server's CPU time over
//! `--cpu-seconds` gives its cost of doing nothing (timers, keepalive checks, polling).

use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::common::{self, Common, seconds, strided};
use crate::imap::Imap;
use crate::procfs::{self, Measure};
use crate::shard::{self, Control, Msg, ShardId, Shards};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Sessions at the first checkpoint.
    #[arg(long, default_value_t = 500)]
    pub from: usize,
    /// Sessions at the last checkpoint (the total held).
    #[arg(long, default_value_t = 2000)]
    pub to: usize,
    /// Put every session in IDLE; otherwise it stays logged in with INBOX selected.
    #[arg(long)]
    pub idle: bool,
    /// Seconds to let the server settle at each checkpoint before reading its memory.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Seconds over which the server's CPU time is measured with all sessions idle (0: skip).
    #[arg(long, default_value_t = 20.0)]
    pub cpu_seconds: f64,
    /// Memory figure read from /proc/<pid>/smaps_rollup.
    #[arg(long, value_enum, default_value = "pss")]
    pub measure: Measure,
    /// The user of every session (like Outlook, one user opening many sessions; the server's
    /// per-user+IP cap must allow it). Ignored with --users.
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// Spread the sessions over the numbered users <PREFIX>1..<PREFIX>N instead.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Sessions being opened at once by each shard.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
}

impl Args {
    /// The mode as a RESULT value.
    fn mode(&self) -> &'static str {
        if self.idle { "idle" } else { "selected" }
    }

    fn mode_text(&self) -> &'static str {
        if self.idle {
            "in IDLE"
        } else {
            "logged in, INBOX selected"
        }
    }

    fn user_of(&self, global: usize) -> String {
        if self.users > 0 {
            self.common.user(global % self.users + 1)
        } else {
            self.user.clone()
        }
    }
}

/// Time allowed for a shard to open its share of one checkpoint (Dovecot forks a process per
/// session; thousands take a while on two cores).
fn open_limit(sessions: usize) -> Duration {
    Duration::from_secs(60 + sessions as u64 / 20)
}

pub fn run(args: &Args) -> Result<()> {
    let pid = args
        .common
        .pid
        .context("idle needs --pid (the server to measure)")?;
    common::check_pid(Some(pid))?;
    ensure!(
        0 < args.from && args.from < args.to,
        "need 0 < --from < --to"
    );
    let label = &args.common.label;
    let mut shards = Shards::spawn(args.common.shard_count(args.to))?;
    let k = shards.count();
    let base = procfs::memory_kib(pid, args.measure);
    println!(
        "{label}: idle ({}), {} -> {} sessions over {k} client process(es); base {} {base} KiB",
        args.mode_text(),
        args.from,
        args.to,
        args.measure.name()
    );
    let started = Instant::now();
    let mut readings = Vec::new();
    for target in [args.from, args.to] {
        shards.send_all(&format!("open {target}"))?;
        let opened = shards.gather("opened", open_limit(target))?;
        let n = shard::sum(&opened, "sessions")?;
        ensure!(n as usize == target, "{n} sessions open, {target} wanted");
        std::thread::sleep(seconds(args.settle));
        let kib = procfs::memory_kib(pid, args.measure);
        println!(
            "{label}: {target} sessions: {} {kib} KiB ({:.1} s since start)",
            args.measure.name(),
            started.elapsed().as_secs_f64()
        );
        readings.push(kib);
    }
    let alive = check(&mut shards)?;
    let bytes = (readings[1] as f64 - readings[0] as f64) * 1024.0 / (args.to - args.from) as f64;
    println!(
        "{label}: marginal {bytes:.0} bytes per session {} ({} slope {} -> {}); total {:.1} \
         MiB at {}; {alive} of {} sessions still open",
        args.mode_text(),
        args.measure.name(),
        args.from,
        args.to,
        readings[1] as f64 / 1024.0,
        args.to,
        args.to
    );
    let mut cpu_per_min = None;
    if args.cpu_seconds > 0.0 {
        let before = procfs::cpu_seconds(pid)?;
        let t0 = Instant::now();
        std::thread::sleep(seconds(args.cpu_seconds));
        let used = procfs::cpu_seconds(pid)? - before;
        let per_min = used * 1000.0 * 60.0 / t0.elapsed().as_secs_f64();
        println!(
            "{label}: server CPU while {} sessions idle: {:.0} ms in {:.1} s = {per_min:.1} ms \
             per minute",
            args.to,
            used * 1000.0,
            t0.elapsed().as_secs_f64()
        );
        cpu_per_min = Some(per_min);
    }
    let alive_after = check(&mut shards)?;
    let mut result = format!(
        "RESULT scenario=idle mode={} from={} to={} measure={} base_kib={base} kib_from={} \
         kib_to={} bytes_per_session={bytes:.0} alive={alive_after}",
        args.mode(),
        args.from,
        args.to,
        args.measure.name(),
        readings[0],
        readings[1],
    );
    if let Some(c) = cpu_per_min {
        result.push_str(&format!(" cpu_ms_per_min={c:.1}"));
    }
    println!("{result}");
    if alive_after as usize != args.to {
        bail!(
            "{} sessions were closed by the server during the run; the figures are not valid",
            args.to - alive_after as usize
        );
    }
    Ok(())
}

/// Asks every shard how many of its sessions the server still holds open.
fn check(shards: &mut Shards) -> Result<u64> {
    shards.send_all("check")?;
    let alive = shards.gather("alive", Duration::from_secs(60))?;
    shard::sum(&alive, "sessions")
}

pub async fn shard(args: Args, me: ShardId, mut control: Control) -> Result<()> {
    let args = Rc::new(args);
    let source = args.common.source_for(me);
    let mut held: Vec<TcpStream> = Vec::new();
    while let Some(line) = control.next().await {
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "open" => {
                let target: usize = rest.parse().context("open: count")?;
                let mine: Vec<usize> = strided(me, target).skip(held.len()).collect();
                let opened = common::open_all(mine, args.parallel, |global| {
                    let args = args.clone();
                    async move { open(&args, source, global).await }
                })
                .await?;
                held.extend(opened);
                Msg::new("opened").with("sessions", held.len()).emit();
            }
            "check" => {
                let alive = held.iter().filter(|s| is_open(s)).count();
                Msg::new("alive").with("sessions", alive).emit();
            }
            "quit" => break,
            other => bail!("unknown command {other:?}"),
        }
    }
    Ok(())
}

/// Opens session `global`: LOGIN, SELECT INBOX, and IDLE when asked. The socket is then
/// taken out of the runtime: nothing more is read from it until the liveness check.
async fn open(args: &Args, source: Option<std::net::IpAddr>, global: usize) -> Result<TcpStream> {
    let c = &args.common;
    let mut imap = Imap::connect(c.imap, source, c.step_timeout())
        .await
        .with_context(|| format!("session {global}: connect to {}", c.imap))?;
    imap.login(&args.user_of(global), &c.password).await?;
    imap.select("INBOX").await?;
    if args.idle {
        imap.idle().await?;
    }
    Ok(imap.stream.into_std()?)
}

/// A held session is open unless the server closed it or said `BYE`. Keepalives (`* OK
/// Still here`) are allowed; they stay unread in the socket, as with a client that sleeps.
fn is_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.peek(&mut buf) {
        Ok(0) => false,
        Ok(n) => !String::from_utf8_lossy(&buf[..n]).contains("* BYE"),
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}
