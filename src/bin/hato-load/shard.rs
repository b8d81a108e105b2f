//! Spreading the connections over several client processes.
//!
//! One process may hold at most ~20,000 descriptors here (the open-file hard limit) and one
//! source address has ~28,000 ports, so the coordinator (the process the user started)
//! starts K copies of itself with a hidden `--shard I/K`; shard I binds its connections to
//! its own 127.0.0.(2+I) and owns every K-th session. The coordinator holds no connection: it
//! sends commands to each shard's standard input, reads results from its standard output, one
//! line each way (`word key=value ...`), and measures the server in between, so the server's
//! figures are read while every shard is in the same phase. Shards write diagnostics to
//! standard error, which they share with the coordinator.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::sync::mpsc as async_mpsc;

use crate::procfs;
use crate::stats::Histogram;

/// Which shard this process is: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardId {
    pub index: usize,
    pub count: usize,
}

impl FromStr for ShardId {
    type Err = String;
    fn from_str(s: &str) -> Result<ShardId, String> {
        let parse = || {
            let (i, k) = s.split_once('/')?;
            let (index, count) = (i.parse().ok()?, k.parse().ok()?);
            (index < count).then_some(ShardId { index, count })
        };
        parse().ok_or_else(|| format!("{s:?} is not I/K with I < K"))
    }
}

/// One protocol line: a word, then `key=value` fields (values without spaces).
#[derive(Debug, Clone)]
pub struct Msg {
    pub shard: usize,
    pub word: String,
    fields: Vec<(String, String)>,
}

impl Msg {
    pub fn new(word: &str) -> Msg {
        Msg {
            shard: 0,
            word: word.to_string(),
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Display) -> Msg {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// Sends this message to the coordinator (a shard's standard output).
    pub fn emit(&self) {
        let mut line = self.word.clone();
        for (k, v) in &self.fields {
            line.push_str(&format!(" {k}={v}"));
        }
        let mut out = std::io::stdout().lock();
        // The coordinator reading our output is gone if this fails; nothing left to tell.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn parse(shard: usize, line: &str) -> Msg {
        let mut parts = line.split(' ');
        let word = parts.next().unwrap_or_default().to_string();
        let fields = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Msg {
            shard,
            word,
            fields,
        }
    }

    pub fn get(&self, key: &str) -> Result<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| anyhow!("shard {}: `{}` without {key}", self.shard, self.word))
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .parse()
            .with_context(|| format!("shard {}: {key}", self.shard))
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .parse()
            .with_context(|| format!("shard {}: {key}", self.shard))
    }

    pub fn hist(&self, key: &str) -> Result<Histogram> {
        Histogram::decode(self.get(key)?).with_context(|| format!("shard {}: {key}", self.shard))
    }
}

/// The sum of a count over the shards' messages.
pub fn sum(msgs: &[Msg], key: &str) -> Result<u64> {
    msgs.iter().map(|m| m.u64(key)).sum()
}

/// The shards' histograms of `key`, merged.
pub fn merged(msgs: &[Msg], key: &str) -> Result<Histogram> {
    let mut all = Histogram::new();
    for m in msgs {
        all.merge(&m.hist(key)?);
    }
    Ok(all)
}

/// The coordinator's handle on its shards.
pub struct Shards {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    /// Lines from every shard's standard output; `None` when one ends.
    rx: mpsc::Receiver<(usize, Option<String>)>,
}

impl Shards {
    /// Starts `count` shards: this program with the same arguments plus `--shard I/K`.
    pub fn spawn(count: usize) -> Result<Shards> {
        let exe = std::env::current_exe().context("own executable")?;
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let (tx, rx) = mpsc::channel();
        let mut shards = Shards {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
        };
        for index in 0..count {
            let mut child = Command::new(&exe)
                .args(&args)
                .arg(format!("--shard={index}/{count}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("start a shard")?;
            let stdout = child.stdout.take().context("shard stdout")?;
            shards.stdins.push(child.stdin.take());
            shards.children.push(child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((index, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((index, None));
            });
        }
        Ok(shards)
    }

    pub fn count(&self) -> usize {
        self.children.len()
    }

    /// Sends one command line to shard `index`.
    pub fn send(&mut self, index: usize, line: &str) -> Result<()> {
        let stdin = self.stdins[index]
            .as_mut()
            .with_context(|| format!("shard {index} is closed"))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("shard {index} has exited"))
    }

    /// Sends one command line to every shard.
    pub fn send_all(&mut self, line: &str) -> Result<()> {
        (0..self.count()).try_for_each(|i| self.send(i, line))
    }

    /// Waits up to `limit` for a `word` message from each shard in `from`; returns them in
    /// shard order. A shard's `error` line, or its end, fails the run.
    pub fn gather_from(&mut self, from: &[usize], word: &str, limit: Duration) -> Result<Vec<Msg>> {
        let deadline = Instant::now() + limit;
        let mut got: Vec<Option<Msg>> = vec![None; self.count()];
        while from.iter().any(|&i| got[i].is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (shard, line) = self
                .rx
                .recv_timeout(left)
                .map_err(|_| anyhow!("no `{word}` from every shard within {limit:?}"))?;
            let Some(line) = line else {
                // A shard may finish as soon as it has said its last word.
                if got[shard].is_some() || !from.contains(&shard) {
                    continue;
                }
                bail!("shard {shard} exited before `{word}` (its error is above)");
            };
            if let Some(text) = line.strip_prefix("error ") {
                bail!("shard {shard}: {text}");
            }
            let msg = Msg::parse(shard, &line);
            if msg.word != word || !from.contains(&shard) {
                bail!("shard {shard} said {line:?} while `{word}` was awaited");
            }
            got[shard] = Some(msg);
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// [`Shards::gather_from`] every shard.
    pub fn gather(&mut self, word: &str, limit: Duration) -> Result<Vec<Msg>> {
        let all: Vec<usize> = (0..self.count()).collect();
        self.gather_from(&all, word, limit)
    }
}

/// What a fixed-length run over the shards gave: the shards' `done` messages, the longest
/// shard's running time, and the server's CPU seconds over the run (with `--pid`).
pub struct TimedRun {
    pub done: Vec<Msg>,
    pub elapsed: f64,
    pub server_cpu: Option<f64>,
}

/// Runs a fixed-length scenario of `clients` clients over the shards: starts them, says what
/// runs, lets them go together and waits for each one's `done` (at most the run plus
/// `grace`), measuring the server's CPU across it.
pub fn timed_run(
    common: &crate::common::Common,
    scenario: &str,
    clients: usize,
    run_seconds: f64,
    grace: Duration,
) -> Result<TimedRun> {
    crate::common::check_pid(common.pid)?;
    anyhow::ensure!(clients > 0, "need --clients > 0");
    let label = &common.label;
    let mut shards = Shards::spawn(common.shard_count(clients).min(clients))?;
    shards.gather("ready", Duration::from_secs(60))?;
    println!(
        "{label}: {scenario}: {clients} clients over {} client process(es) for {run_seconds} s",
        shards.count(),
    );
    let cpu_before = common.pid.map(procfs::cpu_seconds).transpose()?;
    shards.send_all("go")?;
    let limit = crate::common::seconds(run_seconds) + grace;
    let done = shards.gather("done", limit)?;
    let server_cpu = match (common.pid, cpu_before) {
        (Some(pid), Some(before)) => Some(procfs::cpu_seconds(pid)? - before),
        _ => None,
    };
    let elapsed = done
        .iter()
        .map(|m| m.f64("elapsed"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(0.0, f64::max);
    Ok(TimedRun {
        done,
        elapsed,
        server_cpu,
    })
}

impl Drop for Shards {
    /// Closes the shards' input, which tells them to finish; kills (by pid) any that has not
    /// within five seconds.
    fn drop(&mut self) {
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// A shard's side: the coordinator's commands, read from standard input by a thread.
pub struct Control {
    rx: async_mpsc::UnboundedReceiver<String>,
}

impl Control {
    /// The next command; `None` when the coordinator has closed our input (time to finish).
    pub async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// The next command, which must be `word`; returns the rest of its line.
    pub async fn expect(&mut self, word: &str) -> Result<String> {
        let line = self
            .next()
            .await
            .with_context(|| format!("the coordinator left before `{word}`"))?;
        let (got, rest) = line.split_once(' ').unwrap_or((&line, ""));
        if got != word {
            bail!("got command {line:?}, expected `{word}`");
        }
        Ok(rest.to_string())
    }
}

/// Runs a shard: raises the open-file limit, starts the command reader, and runs `body` on a
/// single-threaded runtime (one core's worth of client, so the server keeps the others),
/// inside a `LocalSet` so sessions can share plain `Rc<RefCell<..>>` tallies. A failure is
/// reported to the coordinator as an `error` line.
pub fn child<F, Fut>(me: ShardId, body: F) -> Result<()>
where
    F: FnOnce(ShardId, Control) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let outcome = (|| {
        procfs::raise_nofile_limit()?;
        let (tx, rx) = async_mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, body(me, Control { rx }))
    })();
    if let Err(e) = &outcome {
        let text = format!("{e:#}").replace('\n', " ");
        // Not println!: it panics when the coordinator has gone and the pipe is closed.
        let _ = writeln!(std::io::stdout().lock(), "error {text}");
    }
    outcome
}
