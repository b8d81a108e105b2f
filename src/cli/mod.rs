//! The `hato` command line: `serve`, `user`, `reg`, `deliver`, the admin requests `who`,
//! `kick`, `reload`, `stats`, and `director` (nginx's login router). The only place that uses
//! `anyhow`.

mod admin;
mod deliver;
mod director;
mod reg;
mod serve;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hato",
    version,
    about = "An IMAP4 server for very large mail sites"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Manage users in the passwd-file.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Read and write the settings in the reg tree.
    #[command(subcommand)]
    Reg(reg::RegCommand),
    /// Deliver a message from standard input to a user's INBOX (for an MTA).
    Deliver(deliver::DeliverArgs),
    /// List the sessions of the running server (user, address, worker, state, idle time).
    Who(admin::AdminArgs),
    /// Close a user's sessions (all, or those from one address) with `* BYE`.
    Kick(admin::KickArgs),
    /// Reload the reg tree of the running server (like SIGHUP).
    Reload(admin::AdminArgs),
    /// A one-screen summary of the running server's counters.
    Stats(admin::AdminArgs),
    /// Route logins for nginx's mail proxy (auth_http) to the node that owns each user.
    Director(director::DirectorArgs),
}

/// The spool directory option shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct SpoolArg {
    /// Spool directory (default: $HATO_SPOOL, else $XDG_DATA_HOME/hato, else ~/.local/share/hato).
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
}

impl SpoolArg {
    pub(crate) fn path(&self) -> PathBuf {
        self.spool
            .clone()
            .unwrap_or_else(crate::config::default_spool)
    }
}

/// Parses the command line, runs it, and turns an error into a message and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::User(command) => user::run(command),
        Command::Reg(command) => reg::run(command),
        Command::Deliver(args) => deliver::run(args),
        Command::Who(args) => admin::who(args),
        Command::Kick(args) => admin::kick(args),
        Command::Reload(args) => admin::reload(args),
        Command::Stats(args) => admin::stats(args),
        Command::Director(args) => director::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hato: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HATO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
