//! Scenario `noop-storm`: N clients with INBOX selected, each sending NOOP at R per second on
//! a mailbox nobody changes (Outlook 2013 polls at 6.4/s once NOOP answers carry folder
//! state). Reports the NOOPs answered, the server's CPU per 1,000 NOOPs and the round-trip
//! latency.
//!
//! Each client sends on its own schedule (a random phase, then every 1/R s) whether or not
//! the previous answer has come: independent Outlooks do not wait for each other, and a slow
//! server must show as latency, not as a lower request rate. With `--probe`, one more
//! client does SELECT INBOX + UID FETCH 1:20 (FLAGS ENVELOPE) every 100 ms, before the storm
//! (quiet: its clients connected but silent) and during it: what the storm costs everyone
//! else.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::common::{self, Common, Rng, ms, seconds, strided};
use crate::imap::{self, Imap, Status};
use crate::mail;
use crate::net::{Either, race};
use crate::procfs;
use crate::shard::{self, Control, Msg, ShardId, Shards};
use crate::stats::Histogram;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Polling clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// NOOPs per second per client.
    #[arg(long, default_value_t = 6.4)]
    pub rate: f64,
    /// Length of the storm in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// The user of every client (one user, many sessions, as in the field). Ignored with
    /// --users.
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// Spread the clients over the numbered users <PREFIX>1..<PREFIX>N instead.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Also time another client's SELECT + UID FETCH 1:20 every 100 ms, before and during the
    /// storm (INBOX is filled to 20 messages first if it has fewer).
    #[arg(long)]
    pub probe: bool,
    /// Seconds of probing before the storm.
    #[arg(long, default_value_t = 3.0)]
    pub probe_seconds: f64,
    /// Sessions being opened at once by each shard.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
}

impl Args {
    fn user_of(&self, global: usize) -> String {
        if self.users > 0 {
            self.common.user(global % self.users + 1)
        } else {
            self.user.clone()
        }
    }
}

/// How long answers still outstanding at the end of the storm are waited for.
const DRAIN: Duration = Duration::from_secs(10);

pub fn run(args: &Args) -> Result<()> {
    common::check_pid(args.common.pid)?;
    ensure!(args.rate > 0.0, "--rate must be positive");
    let label = &args.common.label;
    let mut shards = Shards::spawn(args.common.shard_count(args.clients + 1))?;
    shards.send_all("open")?;
    let opened = shards.gather(
        "opened",
        Duration::from_secs(120 + args.clients as u64 / 20),
    )?;
    let n = shard::sum(&opened, "sessions")?;
    ensure!(
        n as usize == args.clients,
        "{n} sessions open, {} wanted",
        args.clients
    );
    println!(
        "{label}: noop-storm: {} clients over {} client process(es), INBOX selected",
        args.clients,
        shards.count()
    );
    let mut quiet = None;
    if args.probe {
        shards.send(0, "probe")?;
        let probed = shards.gather_from(
            &[0],
            "probed",
            seconds(args.probe_seconds) + Duration::from_secs(120),
        )?;
        quiet = Some(probed[0].hist("probe")?);
    }
    let cpu_before = args.common.pid.map(procfs::cpu_seconds).transpose()?;
    let started = Instant::now();
    shards.send_all("go")?;
    let done = shards.gather(
        "done",
        seconds(args.seconds) + DRAIN + Duration::from_secs(60),
    )?;
    let elapsed = started.elapsed();
    let cpu = match (args.common.pid, cpu_before) {
        (Some(pid), Some(before)) => Some(procfs::cpu_seconds(pid)? - before),
        _ => None,
    };
    let hist = shard::merged(&done, "latency")?;
    let sent = shard::sum(&done, "sent")?;
    let answered = hist.count();
    let missing = shard::sum(&done, "missing")?;
    let errors = shard::sum(&done, "errors")?;
    let lost = shard::sum(&done, "lost")?;
    let mut line = format!(
        "{label}: {} clients x {}/s for {} s: {sent} NOOPs sent, {answered} answered ({:.0}/s), \
         {missing} unanswered, {errors} not OK, {lost} sessions lost; latency p50 {} ms, p99 {} \
         ms, max {} ms",
        args.clients,
        args.rate,
        args.seconds,
        answered as f64 / args.seconds,
        ms(hist.quantile(0.5)),
        ms(hist.quantile(0.99)),
        ms(hist.max()),
    );
    let mut result = format!(
        "RESULT scenario=noop-storm clients={} rate={} seconds={} sent={sent} \
         answered={answered} missing={missing} errors={errors} lost={lost} p50_ms={} \
         p99_ms={} max_ms={}",
        args.clients,
        args.rate,
        args.seconds,
        ms(hist.quantile(0.5)),
        ms(hist.quantile(0.99)),
        ms(hist.max()),
    );
    if let Some(cpu) = cpu {
        let per_1000 = cpu * 1000.0 * 1000.0 / answered.max(1) as f64;
        line.push_str(&format!(
            "; server CPU {cpu:.2} s in {:.1} s = {per_1000:.1} ms per 1000 NOOPs",
            elapsed.as_secs_f64()
        ));
        result.push_str(&format!(
            " cpu_ms={:.0} cpu_ms_per_1000={per_1000:.2}",
            cpu * 1000.0
        ));
    }
    if let Some(quiet) = quiet {
        let stormy = done[0].hist("probe")?;
        line.push_str(&format!(
            "; probe SELECT+FETCH p50/p99 quiet {}/{} ms, during the storm {}/{} ms ({}/{} \
             samples)",
            ms(quiet.quantile(0.5)),
            ms(quiet.quantile(0.99)),
            ms(stormy.quantile(0.5)),
            ms(stormy.quantile(0.99)),
            quiet.count(),
            stormy.count()
        ));
        result.push_str(&format!(
            " probe_quiet_p50_ms={} probe_quiet_p99_ms={} probe_storm_p50_ms={} \
             probe_storm_p99_ms={}",
            ms(quiet.quantile(0.5)),
            ms(quiet.quantile(0.99)),
            ms(stormy.quantile(0.5)),
            ms(stormy.quantile(0.99)),
        ));
    }
    println!("{line}");
    println!("{result}");
    Ok(())
}

/// A shard's tallies, shared by its client tasks (one thread: `Rc<RefCell>`).
#[derive(Default)]
struct Tally {
    latency: Histogram,
    sent: u64,
    missing: u64,
    errors: u64,
    lost: u64,
}

pub async fn shard(args: Args, me: ShardId, mut control: Control) -> Result<()> {
    let args = Rc::new(args);
    let source = args.common.source_for(me);
    control.expect("open").await?;
    let mine: Vec<usize> = strided(me, args.clients).collect();
    let sessions = common::open_all(mine, args.parallel, |global| {
        let args = args.clone();
        async move {
            let c = &args.common;
            let mut imap = Imap::connect(c.imap, source, c.step_timeout())
                .await
                .with_context(|| format!("client {global}: connect to {}", c.imap))?;
            imap.login(&args.user_of(global), &c.password).await?;
            imap.select("INBOX").await?;
            Ok(imap)
        }
    })
    .await?;
    Msg::new("opened").with("sessions", sessions.len()).emit();

    let mut prober = None;
    let mut command = control.next().await.unwrap_or_default();
    if command == "probe" {
        let mut imap = probe_session(&args, source).await?;
        let mut quiet = Histogram::new();
        probe(
            &mut imap,
            Instant::now() + seconds(args.probe_seconds),
            &mut quiet,
        )
        .await?;
        Msg::new("probed").with("probe", quiet.encode()).emit();
        prober = Some(imap);
        command = control.next().await.unwrap_or_default();
    }
    if command != "go" {
        bail!("got command {command:?}, expected `go`");
    }

    let tally = Rc::new(RefCell::new(Tally::default()));
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let end = start + seconds(args.seconds);
    let mut rng = Rng::new();
    let mut clients = JoinSet::new();
    for imap in sessions {
        let first = start + period.mul_f64(rng.unit());
        clients.spawn_local(client(imap, first, end, period, tally.clone()));
    }
    let stormy = prober.map(|mut imap| {
        tokio::task::spawn_local(async move {
            let mut h = Histogram::new();
            probe(&mut imap, end, &mut h).await.map(|()| h)
        })
    });
    while clients.join_next().await.is_some() {}
    let mut done = {
        let t = tally.borrow();
        Msg::new("done")
            .with("sent", t.sent)
            .with("missing", t.missing)
            .with("errors", t.errors)
            .with("lost", t.lost)
            .with("latency", t.latency.encode())
    };
    if let Some(task) = stormy {
        done = done.with("probe", task.await.context("probe task")??.encode());
    }
    done.emit();
    Ok(())
}

/// One polling client: NOOP at `first`, then every `period` until `end`; answers are
/// matched to their NOOP by tag, in order.
async fn client(
    mut imap: Imap,
    first: Instant,
    end: Instant,
    period: Duration,
    tally: Rc<RefCell<Tally>>,
) {
    let mut next = first;
    let mut counter = 0u64;
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        let sending = next < end;
        if !sending && inflight.is_empty() {
            return;
        }
        let wake = if sending { next } else { end + DRAIN };
        let Imap { stream, reader, .. } = &mut imap;
        let event = race(tokio::time::sleep_until(wake.into()), reader.next(stream)).await;
        match event {
            Either::Left(()) if !sending => {
                tally.borrow_mut().missing += inflight.len() as u64;
                return;
            }
            Either::Left(()) => {
                counter += 1;
                inflight.push_back((counter, Instant::now()));
                tally.borrow_mut().sent += 1;
                if stream
                    .write_all(format!("n{counter} NOOP\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    let mut t = tally.borrow_mut();
                    t.lost += 1;
                    t.missing += inflight.len() as u64;
                    return;
                }
                next += period;
            }
            Either::Right(Ok(line)) => {
                let now = Instant::now();
                if imap::is_bye(line) {
                    let mut t = tally.borrow_mut();
                    t.lost += 1;
                    t.missing += inflight.len() as u64;
                    return;
                }
                let Some((tag, status)) = noop_answer(line) else {
                    continue; // an untagged response (there should be none: nothing changes)
                };
                let mut t = tally.borrow_mut();
                while let Some(&(sent_tag, at)) = inflight.front() {
                    if sent_tag > tag {
                        break;
                    }
                    inflight.pop_front();
                    if sent_tag == tag {
                        t.latency.record(now - at);
                        t.errors += u64::from(status != Status::Ok);
                    } else {
                        t.missing += 1; // answered out of order: never by a sane server
                    }
                }
            }
            Either::Right(Err(_)) => {
                let mut t = tally.borrow_mut();
                t.lost += 1;
                t.missing += inflight.len() as u64;
                return;
            }
        }
    }
}

/// The tag number and status of a NOOP's tagged answer (`n17 OK NOOP completed`).
fn noop_answer(line: &[u8]) -> Option<(u64, Status)> {
    let rest = line.strip_prefix(b"n")?;
    let space = memchr::memchr(b' ', rest)?;
    let tag: u64 = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    let tagged = imap::parse_tagged(line, &format!("n{tag}"))?;
    Some((tag, tagged.status))
}

/// The probe's session, with INBOX holding at least the 20 messages it fetches.
async fn probe_session(args: &Args, source: Option<std::net::IpAddr>) -> Result<Imap> {
    let c = &args.common;
    let mut imap = Imap::connect(c.imap, source, c.step_timeout()).await?;
    imap.login(&args.user_of(0), &c.password).await?;
    let count = imap.select("INBOX").await?;
    for n in count as usize..20 {
        let answer = imap
            .append("INBOX", "", &mail::small_message(&format!("probe-{n}"), n))
            .await?;
        ensure!(answer.ok(), "APPEND for the probe: {}", answer.line);
    }
    Ok(imap)
}

/// SELECT INBOX + UID FETCH 1:20 (FLAGS ENVELOPE), pipelined, every 100 ms until `until`.
async fn probe(imap: &mut Imap, until: Instant, hist: &mut Histogram) -> Result<()> {
    while Instant::now() < until {
        let began = Instant::now();
        let (s, f) = (imap.tag(), imap.tag());
        let both = format!("{s} SELECT INBOX\r\n{f} UID FETCH 1:20 (FLAGS ENVELOPE)\r\n");
        imap.write(both.as_bytes()).await?;
        let selected = imap.until_tagged(&s, |_| {}).await?;
        let fetched = imap.until_tagged(&f, |_| {}).await?;
        ensure!(
            selected.ok() && fetched.ok(),
            "probe: {} / {}",
            selected.line,
            fetched.line
        );
        hist.record(began.elapsed());
        tokio::time::sleep_until((began + Duration::from_millis(100)).into()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noop_answers_are_matched() {
        assert_eq!(
            noop_answer(b"n17 OK NOOP completed"),
            Some((17, Status::Ok))
        );
        assert_eq!(noop_answer(b"n3 BAD what"), Some((3, Status::Bad)));
        assert_eq!(noop_answer(b"* 3 EXISTS"), None);
        assert_eq!(noop_answer(b"nx OK"), None);
    }
}
