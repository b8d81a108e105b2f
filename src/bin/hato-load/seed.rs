//! `seed`: gives servers equal mail before a comparison. Delivers the same generated messages
//! (see [`mail::seed_message`]) over LMTP to `--user` and to <PREFIX>1..<PREFIX>N, in the same
//! order for every user, so each INBOX holds byte-identical messages with the same UIDs on
//! every server seeded this way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::task::JoinSet;

use crate::common::seconds;
use crate::lmtp::Lmtp;
use crate::mail;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The server's LMTP listener.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2424")]
    pub lmtp: SocketAddr,
    /// Numbered users <PREFIX>1..<PREFIX>N to fill.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// The numbered users' prefix.
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// One more user to fill (empty: none).
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// Messages per user.
    #[arg(long, default_value_t = 30)]
    pub messages: usize,
    /// The recipient domain.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// LMTP connections at once.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Recipients per transaction (one copy of the message, one reply per recipient).
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// Longest wait for one LMTP reply, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let mut users: Vec<String> = Vec::new();
    if !args.user.is_empty() {
        users.push(args.user.clone());
    }
    users.extend((1..=args.users).map(|n| format!("{}{n}", args.user_prefix)));
    if users.is_empty() {
        bail!("no users to seed (--users N and/or --user NAME)");
    }
    let recipients: Vec<String> = users
        .iter()
        .map(|u| format!("{u}@{}", args.domain))
        .collect();
    let batches: Vec<Vec<String>> = recipients
        .chunks(args.batch.max(1))
        .map(<[String]>::to_vec)
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    local.block_on(&runtime, async {
        // A connection owns whole batches of users and delivers message 0, 1, 2, ... to
        // them in turn: every user gets the messages in the same order on every server.
        let connections = args.connections.clamp(1, batches.len());
        let mut tasks = JoinSet::new();
        for c in 0..connections {
            let mine: Vec<Vec<String>> = batches
                .iter()
                .skip(c)
                .step_by(connections)
                .cloned()
                .collect();
            let (server, messages) = (args.lmtp, args.messages);
            let limit = seconds(args.timeout);
            tasks.spawn_local(async move { fill(server, limit, mine, messages).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("seed task")??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "seeded {} users x {} messages ({} deliveries) in {took:.1} s",
        users.len(),
        args.messages,
        users.len() * args.messages
    );
    println!(
        "RESULT scenario=seed users={} messages={} deliveries={} seconds={took:.2}",
        users.len(),
        args.messages,
        users.len() * args.messages
    );
    Ok(())
}

async fn fill(
    server: SocketAddr,
    limit: Duration,
    batches: Vec<Vec<String>>,
    messages: usize,
) -> Result<()> {
    let mut lmtp = Lmtp::connect(server, limit).await?;
    for batch in &batches {
        for n in 0..messages {
            let replies = lmtp.deliver(batch, &mail::seed_message(n), |_| {}).await?;
            for (rcpt, reply) in batch.iter().zip(&replies) {
                if !reply.ok() {
                    bail!("seed message {n} to {rcpt}: {} {}", reply.code, reply.text);
                }
            }
        }
    }
    lmtp.quit().await;
    Ok(())
}
