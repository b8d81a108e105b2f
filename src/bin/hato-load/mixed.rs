//! Scenario `mixed`: an imaptest-like workload of whole sessions.
//!
//! C clients, each on its own user (<PREFIX>1..<PREFIX>C), loop for a fixed time over one
//! session: LOGIN, SELECT INBOX, FETCH 1:* (UID FLAGS), UID FETCH of up to three messages'
//! ENVELOPE and BODY.PEEK[], UID STORE +FLAGS (\Seen) on one message and ($Bench) on another,
//! UID STORE +FLAGS (\Deleted) on the oldest, APPEND of a small message, EXPUNGE, LOGOUT. One
//! message comes and one goes per session, so mailboxes keep their size. Every command is one
//! operation; reported are operations per second and per-operation latency. A NO or BAD
//! answer is an error: counted and reported, and the session goes on.

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

use crate::common::{Common, Rng, ms, seconds, strided};
use crate::imap::{self, Imap, Tagged};
use crate::mail;
use crate::shard::{self, Control, Msg, ShardId};
use crate::stats::Histogram;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients, client i on user <PREFIX>i.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Length of the run in seconds (sessions under way at the end are finished).
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
}

/// The operations, in session order, as named in the output.
const OPS: [&str; 8] = [
    "login",
    "select",
    "fetch",
    "uid_fetch",
    "store",
    "append",
    "expunge",
    "logout",
];

#[derive(Clone, Copy)]
enum Op {
    Login,
    Select,
    Fetch,
    UidFetch,
    Store,
    Append,
    Expunge,
    Logout,
}

pub fn run(args: &Args) -> Result<()> {
    let label = &args.common.label;
    let grace = args.common.step_timeout() * 12 + Duration::from_secs(60);
    let run = shard::timed_run(&args.common, "mixed", args.clients, args.seconds, grace)?;
    let (done, elapsed) = (&run.done, run.elapsed);
    let all = shard::merged(done, "latency")?;
    let errors = shard::sum(done, "errors")?;
    let broken = shard::sum(done, "broken")?;
    let sessions = shard::sum(done, "sessions")?;
    let ops = all.count();
    let per_second = ops as f64 / elapsed.max(1e-9);
    for op in OPS {
        let h = shard::merged(done, &format!("{op}_latency"))?;
        let e = shard::sum(done, &format!("{op}_errors"))?;
        println!(
            "{label}:   {op:<9} {:>8} ops, {e} errors, p50 {} ms, p99 {} ms, max {} ms",
            h.count(),
            ms(h.quantile(0.5)),
            ms(h.quantile(0.99)),
            ms(h.max())
        );
    }
    let mut line = format!(
        "{label}: {sessions} sessions, {ops} operations in {elapsed:.1} s = {per_second:.0}/s; \
         {errors} errors (NO/BAD), {broken} sessions broken off; latency p50 {} ms, p99 {} ms, \
         max {} ms",
        ms(all.quantile(0.5)),
        ms(all.quantile(0.99)),
        ms(all.max())
    );
    let mut result = format!(
        "RESULT scenario=mixed clients={} seconds={elapsed:.2} sessions={sessions} ops={ops} \
         errors={errors} broken={broken} ops_per_s={per_second:.1} p50_ms={} p99_ms={} max_ms={}",
        args.clients,
        ms(all.quantile(0.5)),
        ms(all.quantile(0.99)),
        ms(all.max())
    );
    if let Some(cpu) = run.server_cpu {
        let per_1000 = cpu * 1e6 / ops.max(1) as f64;
        line.push_str(&format!(
            "; server CPU {per_1000:.1} ms per 1000 operations"
        ));
        result.push_str(&format!(" cpu_ms_per_1000_ops={per_1000:.1}"));
    }
    println!("{line}");
    println!("{result}");
    Ok(())
}

/// A shard's tallies, shared by its clients.
struct Tally {
    all: Histogram,
    per_op: Vec<(Histogram, u64)>,
    errors: u64,
    broken: u64,
    sessions: u64,
    /// The first few error answers, printed for diagnosis.
    shown: usize,
}

impl Tally {
    fn record(&mut self, op: Op, took: Duration, answer: &io::Result<Tagged>) {
        // Without an answer the session is broken off, and counted as such by its client.
        let Ok(tagged) = answer else { return };
        let (hist, errors) = &mut self.per_op[op as usize];
        self.all.record(took);
        hist.record(took);
        if !tagged.ok() {
            *errors += 1;
            self.errors += 1;
            if self.shown < 5 {
                self.shown += 1;
                eprintln!("hato-load: mixed: {}: {}", OPS[op as usize], tagged.line);
            }
        }
    }
}

pub async fn shard(args: Args, me: ShardId, mut control: Control) -> Result<()> {
    let args = Rc::new(args);
    let source = args.common.source_for(me);
    Msg::new("ready").emit();
    control.expect("go").await?;
    let tally = Rc::new(RefCell::new(Tally {
        all: Histogram::new(),
        per_op: vec![(Histogram::new(), 0); OPS.len()],
        errors: 0,
        broken: 0,
        sessions: 0,
        shown: 0,
    }));
    let start = Instant::now();
    let end = start + seconds(args.seconds);
    let mut clients = JoinSet::new();
    for global in strided(me, args.clients) {
        let (args, tally) = (args.clone(), tally.clone());
        clients.spawn_local(async move {
            let mut rng = Rng::new();
            while Instant::now() < end {
                match session(&args, global, source, &tally, &mut rng).await {
                    Ok(()) => tally.borrow_mut().sessions += 1,
                    Err(e) => {
                        {
                            let mut t = tally.borrow_mut();
                            t.broken += 1;
                            if t.shown < 5 {
                                t.shown += 1;
                                eprintln!("hato-load: mixed: client {global}: {e}");
                            }
                        }
                        // Do not spin against a server that refuses connections.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let t = tally.borrow();
    let mut done = Msg::new("done")
        .with("elapsed", format!("{elapsed:.3}"))
        .with("sessions", t.sessions)
        .with("errors", t.errors)
        .with("broken", t.broken)
        .with("latency", t.all.encode());
    for (op, (h, e)) in OPS.iter().zip(&t.per_op) {
        done = done
            .with(&format!("{op}_latency"), h.encode())
            .with(&format!("{op}_errors"), e);
    }
    done.emit();
    Ok(())
}

/// Times one command and records it.
async fn timed(
    tally: &RefCell<Tally>,
    op: Op,
    command: impl Future<Output = io::Result<Tagged>>,
) -> io::Result<Tagged> {
    let began = Instant::now();
    let answer = command.await;
    tally.borrow_mut().record(op, began.elapsed(), &answer);
    answer
}

/// One whole session of client `global` on its own user.
async fn session(
    args: &Args,
    global: usize,
    source: Option<IpAddr>,
    tally: &RefCell<Tally>,
    rng: &mut Rng,
) -> io::Result<()> {
    let c = &args.common;
    let user = c.user(global + 1);
    let mut imap = Imap::connect(c.imap, source, c.step_timeout()).await?;
    let login = format!("LOGIN {} {}", imap::quote(&user), imap::quote(&c.password));
    if !timed(tally, Op::Login, imap.run(&login, |_| {}))
        .await?
        .ok()
    {
        return Ok(()); // counted; nothing more to do without a login
    }
    let selected = timed(tally, Op::Select, imap.run("SELECT INBOX", |_| {})).await?;
    if selected.ok() {
        let mut uids = Vec::new();
        timed(
            tally,
            Op::Fetch,
            imap.run("FETCH 1:* (UID FLAGS)", |line| {
                uids.extend(imap::fetch_uid(line))
            }),
        )
        .await?;
        if !uids.is_empty() {
            let some: Vec<String> = (0..3)
                .map(|_| uids[rng.below(uids.len())].to_string())
                .collect();
            let fetch = format!("UID FETCH {} (ENVELOPE BODY.PEEK[])", some.join(","));
            timed(tally, Op::UidFetch, imap.run(&fetch, |_| {})).await?;
            let seen = uids[rng.below(uids.len())];
            let store = format!("UID STORE {seen} +FLAGS (\\Seen)");
            timed(tally, Op::Store, imap.run(&store, |_| {})).await?;
            let marked = uids[rng.below(uids.len())];
            let store = format!("UID STORE {marked} +FLAGS ($Bench)");
            timed(tally, Op::Store, imap.run(&store, |_| {})).await?;
            let oldest = uids.iter().min().copied().unwrap_or(1);
            let store = format!("UID STORE {oldest} +FLAGS (\\Deleted)");
            timed(tally, Op::Store, imap.run(&store, |_| {})).await?;
        }
        let id = format!("mixed-{global}-{}", rng.next_u64());
        let message = mail::small_message(&id, rng.below(100_000));
        timed(tally, Op::Append, imap.append("INBOX", "", &message)).await?;
        timed(tally, Op::Expunge, imap.run("EXPUNGE", |_| {})).await?;
    }
    let answer = timed(tally, Op::Logout, imap.run("LOGOUT", |_| {})).await;
    imap.wait_closed().await;
    answer.map(|_| ())
}
