//! Scenario `connect`: logins per second.
//!
//! C clients, client i on user <PREFIX>i, loop for a fixed time: connect, read the greeting,
//! LOGIN, LOGOUT, wait for the server to close. What a reconnect storm costs (every client
//! coming back after a restart or a network blip). Reported: successful logins per second,
//! the LOGIN command's latency, the greeting's (connect to `* OK`) and the whole cycle's.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

use crate::common::{Common, ms, seconds, strided};
use crate::imap::{self, Imap};
use crate::shard::{self, Control, Msg, ShardId};
use crate::stats::Histogram;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients, client i on user <PREFIX>i.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let label = &args.common.label;
    let grace = args.common.step_timeout() * 4 + Duration::from_secs(60);
    let run = shard::timed_run(&args.common, "connect", args.clients, args.seconds, grace)?;
    let (done, elapsed) = (&run.done, run.elapsed);
    let login = shard::merged(done, "login")?;
    let greeting = shard::merged(done, "greeting")?;
    let cycle = shard::merged(done, "cycle")?;
    let errors = shard::sum(done, "errors")?;
    let logins = shard::sum(done, "logins")?;
    let per_second = logins as f64 / elapsed.max(1e-9);
    let mut line = format!(
        "{label}: {logins} logins in {elapsed:.1} s = {per_second:.0}/s, {errors} failed; LOGIN \
         p50 {} ms, p99 {} ms; greeting p99 {} ms; whole cycle p99 {} ms",
        ms(login.quantile(0.5)),
        ms(login.quantile(0.99)),
        ms(greeting.quantile(0.99)),
        ms(cycle.quantile(0.99)),
    );
    let mut result = format!(
        "RESULT scenario=connect clients={} seconds={elapsed:.2} logins={logins} \
         errors={errors} logins_per_s={per_second:.1} login_p50_ms={} login_p99_ms={} \
         greeting_p99_ms={} cycle_p99_ms={}",
        args.clients,
        ms(login.quantile(0.5)),
        ms(login.quantile(0.99)),
        ms(greeting.quantile(0.99)),
        ms(cycle.quantile(0.99)),
    );
    if let Some(cpu) = run.server_cpu {
        let per = cpu * 1000.0 / logins.max(1) as f64;
        line.push_str(&format!("; server CPU {per:.2} ms per login"));
        result.push_str(&format!(" cpu_ms_per_login={per:.3}"));
    }
    println!("{line}");
    println!("{result}");
    Ok(())
}

#[derive(Default)]
struct Tally {
    /// LOGIN sent -> tagged answer, every answer (failed ones are counted in `errors` too).
    login: Histogram,
    /// Connect -> greeting.
    greeting: Histogram,
    /// Connect -> the server closed after LOGOUT.
    cycle: Histogram,
    /// LOGINs answered OK.
    logins: u64,
    /// Failed LOGINs and broken connections.
    errors: u64,
}

pub async fn shard(args: Args, me: ShardId, mut control: Control) -> Result<()> {
    let args = Rc::new(args);
    let source = args.common.source_for(me);
    Msg::new("ready").emit();
    control.expect("go").await?;
    let tally = Rc::new(RefCell::new(Tally::default()));
    let start = Instant::now();
    let end = start + seconds(args.seconds);
    let mut clients = JoinSet::new();
    for global in strided(me, args.clients) {
        let (args, tally) = (args.clone(), tally.clone());
        clients.spawn_local(async move {
            let c = &args.common;
            let login = format!(
                "LOGIN {} {}",
                imap::quote(&c.user(global + 1)),
                imap::quote(&c.password)
            );
            let mut shown = 0;
            while Instant::now() < end {
                let began = Instant::now();
                let outcome = async {
                    let mut imap = Imap::connect(c.imap, source, c.step_timeout()).await?;
                    let greeted = Instant::now();
                    let answer = imap.run(&login, |_| {}).await?;
                    let answered = Instant::now();
                    if answer.ok() {
                        imap.run("LOGOUT", |_| {}).await?;
                        imap.wait_closed().await;
                    }
                    Ok::<_, std::io::Error>((greeted, answered, answer))
                }
                .await;
                let failure = {
                    let mut t = tally.borrow_mut();
                    let failure = match outcome {
                        Ok((greeted, answered, answer)) => {
                            t.greeting.record(greeted - began);
                            t.login.record(answered - greeted);
                            t.cycle.record(began.elapsed());
                            t.logins += u64::from(answer.ok());
                            (!answer.ok()).then_some(answer.line)
                        }
                        Err(e) => Some(e.to_string()),
                    };
                    t.errors += u64::from(failure.is_some());
                    failure
                };
                if let Some(why) = failure {
                    if shown < 3 {
                        shown += 1;
                        eprintln!("hato-load: connect: client {global}: {why}");
                    }
                    // Do not spin against a server that refuses.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let t = tally.borrow();
    Msg::new("done")
        .with("elapsed", format!("{elapsed:.3}"))
        .with("logins", t.logins)
        .with("errors", t.errors)
        .with("login", t.login.encode())
        .with("greeting", t.greeting.encode())
        .with("cycle", t.cycle.encode())
        .emit();
    Ok(())
}
