//! `hato-load`: the load generator of the benchmarks (issue 8), for hato and, the same way,
//! for any other IMAP server (Dovecot in `benches/compare.sh`).
//!
//! It speaks IMAP and LMTP itself ([`imap`], [`lmtp`]) and uses nothing of hato's library, so
//! both servers are driven by the same bytes. Each scenario is a subcommand; its module holds
//! the coordinator (run by the command the user typed) and the shard (a child process of
//! itself that holds the connections; see [`shard`]). The coordinator measures the server's
//! whole process tree from `/proc` ([`procfs`]) and prints readable lines and, last, one
//! `RESULT key=value ...` line for scripts.

mod common;
mod connect;
mod idle;
mod imap;
mod lmtp;
mod mail;
mod mixed;
mod net;
mod noop_storm;
mod procfs;
mod seed;
mod shard;
mod stats;
mod wake;

use clap::{Parser, Subcommand};

use shard::ShardId;

/// Load generator for IMAP servers: idle sessions, NOOP storms, IDLE wake-ups, a mixed
/// workload and login rates, measured on the server's process tree.
#[derive(Parser, Debug)]
#[command(name = "hato-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Internal: run as shard I of K (a child process started by the coordinator).
    #[arg(long, global = true, hide = true, value_name = "I/K")]
    shard: Option<ShardId>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold N logged-in sessions (INBOX selected, or in IDLE); memory per session and CPU
    /// while idle.
    Idle(idle::Args),
    /// N clients each sending NOOP at R per second on an unchanged INBOX; server CPU per
    /// 1,000 NOOPs and latency.
    NoopStorm(noop_storm::Args),
    /// Deliveries over LMTP to users waiting in IDLE; delivery -> untagged EXISTS latency.
    Wake(wake::Args),
    /// An imaptest-like mix (login, select, fetch, store, append, expunge, logout);
    /// operations per second and latency.
    Mixed(mixed::Args),
    /// Connect, LOGIN, LOGOUT in a loop; logins per second.
    Connect(connect::Args),
    /// Deliver the same generated messages to every bench user over LMTP (setup, not a
    /// benchmark: gives two servers equal mail).
    Seed(seed::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.shard {
        None => match &cli.command {
            Command::Idle(a) => idle::run(a),
            Command::NoopStorm(a) => noop_storm::run(a),
            Command::Wake(a) => wake::run(a),
            Command::Mixed(a) => mixed::run(a),
            Command::Connect(a) => connect::run(a),
            Command::Seed(a) => seed::run(a),
        },
        Some(me) => shard::child(me, move |me, control| async move {
            match cli.command {
                Command::Idle(a) => idle::shard(a, me, control).await,
                Command::NoopStorm(a) => noop_storm::shard(a, me, control).await,
                Command::Wake(a) => wake::shard(a, me, control).await,
                Command::Mixed(a) => mixed::shard(a, me, control).await,
                Command::Connect(a) => connect::shard(a, me, control).await,
                Command::Seed(_) => anyhow::bail!("seed does not run in shards"),
            }
        }),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hato-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
