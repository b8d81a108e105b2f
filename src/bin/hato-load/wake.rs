//! Scenario `wake`: how fast a delivery reaches a client waiting in IDLE.
//!
//! U users each hold one session in IDLE on INBOX. D messages are delivered over LMTP at a
//! steady rate, each to a user picked at random among those with no delivery in flight; the
//! latency runs from the moment the final `.` of DATA has been written to the moment the
//! untagged `* n EXISTS` announcing that message arrives on the user's IDLE connection. A
//! wake not seen within `--wake-timeout` counts as missed. Deliveries and IDLE sessions of a
//! user live in the same shard, so both ends are timed by one clock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use tokio::task::JoinSet;

use crate::common::{self, Common, Rng, ms, seconds, strided};
use crate::imap::{self, Imap};
use crate::lmtp::Lmtp;
use crate::mail;
use crate::procfs;
use crate::shard::{self, Control, Msg, ShardId, Shards};
use crate::stats::Histogram;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// The server's LMTP listener.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2424")]
    pub lmtp: SocketAddr,
    /// Users <PREFIX>1..<PREFIX>U, each with one session in IDLE.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Messages delivered in all.
    #[arg(long, default_value_t = 1000)]
    pub deliveries: usize,
    /// Deliveries per second, in all.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds after which a wake that has not come counts as missed.
    #[arg(long, default_value_t = 5.0)]
    pub wake_timeout: f64,
    /// LMTP connections per shard (deliveries take turns on them).
    #[arg(long, default_value_t = 2)]
    pub lmtp_connections: usize,
    /// The recipient domain (`<user>@<domain>`).
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Sessions being opened at once by each shard.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
}

pub fn run(args: &Args) -> Result<()> {
    common::check_pid(args.common.pid)?;
    ensure!(
        args.users > 0 && args.rate > 0.0,
        "need --users > 0 and --rate > 0"
    );
    let label = &args.common.label;
    let shard_count = args.common.shard_count(args.users).min(args.users);
    let mut shards = Shards::spawn(shard_count)?;
    shards.send_all("open")?;
    let opened = shards.gather("opened", Duration::from_secs(120 + args.users as u64 / 20))?;
    let n = shard::sum(&opened, "sessions")?;
    ensure!(
        n as usize == args.users,
        "{n} sessions in IDLE, {} wanted",
        args.users
    );
    println!(
        "{label}: wake: {} users in IDLE over {} client process(es); {} deliveries at {}/s",
        args.users,
        shards.count(),
        args.deliveries,
        args.rate
    );
    let cpu_before = args.common.pid.map(procfs::cpu_seconds).transpose()?;
    let started = Instant::now();
    shards.send_all("go")?;
    let limit = seconds(args.deliveries as f64 / args.rate + args.wake_timeout + 120.0);
    let done = shards.gather("done", limit)?;
    let elapsed = started.elapsed();
    let hist = shard::merged(&done, "latency")?;
    let delivered = shard::sum(&done, "delivered")?;
    let missed = shard::sum(&done, "missed")?;
    let failed = shard::sum(&done, "failed")?;
    let lost = shard::sum(&done, "lost")?;
    let seen = hist.count();
    let mut line = format!(
        "{label}: {delivered} delivered in {:.1} s, {failed} refused; {seen} wakes seen, \
         {missed} missed (> {} s), {lost} IDLE sessions lost; delivery -> EXISTS p50 {} ms, \
         p99 {} ms, max {} ms",
        elapsed.as_secs_f64(),
        args.wake_timeout,
        ms(hist.quantile(0.5)),
        ms(hist.quantile(0.99)),
        ms(hist.max()),
    );
    let mut result = format!(
        "RESULT scenario=wake users={} deliveries={} rate={} delivered={delivered} \
         failed={failed} seen={seen} missed={missed} lost={lost} p50_ms={} p99_ms={} max_ms={}",
        args.users,
        args.deliveries,
        args.rate,
        ms(hist.quantile(0.5)),
        ms(hist.quantile(0.99)),
        ms(hist.max()),
    );
    if let (Some(pid), Some(before)) = (args.common.pid, cpu_before) {
        let cpu = procfs::cpu_seconds(pid)? - before;
        let per = cpu * 1000.0 / delivered.max(1) as f64;
        line.push_str(&format!("; server CPU {per:.2} ms per delivery"));
        result.push_str(&format!(" cpu_ms_per_delivery={per:.3}"));
    }
    println!("{line}");
    println!("{result}");
    Ok(())
}

/// One user of this shard.
struct User {
    name: String,
    /// The message count the next delivery will bring (EXISTS at SELECT + delivered so far).
    next_count: u32,
    /// Deliveries written and not yet announced: (the count announcing it, when its `.` was
    /// written). At most one, since users with one in flight are not picked.
    pending: VecDeque<(u32, Instant)>,
    /// Picked for a delivery that is not settled yet.
    busy: bool,
    alive: bool,
}

/// A shard's users and tallies, shared by its IDLE readers and its deliverers.
struct State {
    users: Vec<User>,
    latency: Histogram,
    delivered: u64,
    failed: u64,
    missed: u64,
    timeout: Duration,
}

impl State {
    /// A live user with no delivery in flight, at random.
    fn pick(&mut self, rng: &mut Rng) -> Option<usize> {
        let n = self.users.len();
        let start = rng.below(n);
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.users[i].alive && !self.users[i].busy)?;
        self.users[i].busy = true;
        Some(i)
    }

    /// The final dot of a delivery to user `i` was written at `at`.
    fn sent(&mut self, i: usize, at: Instant) {
        let u = &mut self.users[i];
        u.next_count += 1;
        u.pending.push_back((u.next_count, at));
    }

    /// The server refused or failed the delivery to `i`: no message, nothing to wait for.
    fn refused(&mut self, i: usize) {
        let u = &mut self.users[i];
        if u.pending.pop_back().is_some() {
            u.next_count -= 1;
        }
        u.busy = !u.pending.is_empty();
        self.failed += 1;
    }

    /// User `i`'s IDLE session announced `count` messages at `now`.
    fn exists(&mut self, i: usize, count: u32, now: Instant) {
        let u = &mut self.users[i];
        while let Some(&(want, at)) = u.pending.front() {
            if want > count {
                break;
            }
            u.pending.pop_front();
            self.latency.record(now - at);
        }
        if u.pending.is_empty() {
            u.busy = false;
        }
    }

    /// Counts wakes older than the timeout as missed and frees their users.
    fn sweep(&mut self, now: Instant) {
        for u in &mut self.users {
            while u
                .pending
                .front()
                .is_some_and(|&(_, at)| now - at > self.timeout)
            {
                u.pending.pop_front();
                self.missed += 1;
                u.busy = !u.pending.is_empty();
            }
        }
    }

    fn in_flight(&self) -> bool {
        self.users.iter().any(|u| !u.pending.is_empty())
    }
}

pub async fn shard(args: Args, me: ShardId, mut control: Control) -> Result<()> {
    let args = Rc::new(args);
    let source = args.common.source_for(me);
    control.expect("open").await?;
    let mine: Vec<usize> = strided(me, args.users).collect();
    let sessions = common::open_all(mine, args.parallel, |global| {
        let args = args.clone();
        async move {
            let c = &args.common;
            let user = c.user(global + 1);
            let mut imap = Imap::connect(c.imap, source, c.step_timeout())
                .await
                .with_context(|| format!("{user}: connect to {}", c.imap))?;
            imap.login(&user, &c.password).await?;
            let count = imap.select("INBOX").await?;
            imap.idle().await?;
            Ok((user, count, imap))
        }
    })
    .await?;
    Msg::new("opened").with("sessions", sessions.len()).emit();
    control.expect("go").await?;

    let state = Rc::new(RefCell::new(State {
        users: Vec::new(),
        latency: Histogram::new(),
        delivered: 0,
        failed: 0,
        missed: 0,
        timeout: seconds(args.wake_timeout),
    }));
    let mut readers = JoinSet::new();
    for (i, (name, count, imap)) in sessions.into_iter().enumerate() {
        state.borrow_mut().users.push(User {
            name,
            next_count: count,
            pending: VecDeque::new(),
            busy: false,
            alive: true,
        });
        readers.spawn_local(idle_reader(i, imap, state.clone()));
    }

    // Delivery d (of all shards) is due at start + d / rate; this shard makes every K-th, on
    // its LMTP connections in turn.
    let start = Instant::now();
    let due: Vec<usize> = strided(me, args.deliveries).collect();
    let connections = args.lmtp_connections.clamp(1, due.len().max(1));
    let mut deliverers = JoinSet::new();
    for c in 0..connections {
        let mine: Vec<usize> = due.iter().copied().skip(c).step_by(connections).collect();
        deliverers.spawn_local(deliver(args.clone(), mine, start, state.clone()));
    }
    while let Some(done) = deliverers.join_next().await {
        done.context("delivery task")??;
    }
    while state.borrow().in_flight() {
        state.borrow_mut().sweep(Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    readers.abort_all();
    let s = state.borrow();
    Msg::new("done")
        .with("delivered", s.delivered)
        .with("failed", s.failed)
        .with("missed", s.missed)
        .with("lost", s.users.iter().filter(|u| !u.alive).count())
        .with("latency", s.latency.encode())
        .emit();
    Ok(())
}

/// Reads user `i`'s IDLE session, reporting every `* n EXISTS` as it arrives.
async fn idle_reader(i: usize, mut imap: Imap, state: Rc<RefCell<State>>) {
    while let Ok(line) = imap.next().await {
        if let Some(count) = imap::exists(line) {
            state.borrow_mut().exists(i, count, Instant::now());
        } else if imap::is_bye(line) {
            break;
        }
    }
    state.borrow_mut().users[i].alive = false;
}

/// Makes the deliveries `due` (global numbers) on one LMTP connection, each at its time.
async fn deliver(
    args: Rc<Args>,
    due: Vec<usize>,
    start: Instant,
    state: Rc<RefCell<State>>,
) -> Result<()> {
    if due.is_empty() {
        return Ok(());
    }
    let mut lmtp = Lmtp::connect(args.lmtp, args.common.step_timeout()).await?;
    let mut rng = Rng::new();
    for d in due {
        tokio::time::sleep_until((start + seconds(d as f64 / args.rate)).into()).await;
        let i = loop {
            let picked = {
                let mut s = state.borrow_mut();
                s.sweep(Instant::now());
                if s.users.iter().all(|u| !u.alive) {
                    bail!("every IDLE session of this shard was closed by the server");
                }
                s.pick(&mut rng)
            };
            match picked {
                Some(i) => break i,
                // Every user has a wake in flight: wait for one (the sweep bounds the wait).
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        let name = state.borrow().users[i].name.clone();
        let rcpt = format!("{name}@{}", args.domain);
        let message = mail::small_message(&format!("wake-{d}-{name}"), d);
        let replies = lmtp
            .deliver(std::slice::from_ref(&rcpt), &message, |at| {
                state.borrow_mut().sent(i, at)
            })
            .await
            .with_context(|| format!("LMTP delivery to {rcpt}"))?;
        let mut s = state.borrow_mut();
        match replies.first() {
            Some(r) if r.ok() => s.delivered += 1,
            Some(r) => {
                eprintln!("hato-load: delivery to {rcpt}: {} {}", r.code, r.text);
                s.refused(i);
            }
            None => s.refused(i),
        }
    }
    lmtp.quit().await;
    Ok(())
}
