//! `hato user add|passwd|del|list`: the passwd-file from the command line.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::SpoolArg;
use crate::auth::{PasswdFile, Scheme};
use crate::config::RegTree;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        /// The password (read from standard input when omitted).
        #[arg(long)]
        password: Option<String>,
        /// Password scheme: argon2id, sha512-crypt or plain.
        #[arg(long, default_value = "argon2id")]
        scheme: Scheme,
        #[command(flatten)]
        spool: SpoolArg,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value = "argon2id")]
        scheme: Scheme,
        #[command(flatten)]
        spool: SpoolArg,
    },
    /// Delete a user.
    Del {
        name: String,
        #[command(flatten)]
        spool: SpoolArg,
    },
    /// List users and their password schemes.
    List {
        #[command(flatten)]
        spool: SpoolArg,
    },
}

/// The passwd-file that the reg tree of `spool` points at.
pub(crate) fn passwd_file(spool: &SpoolArg) -> PasswdFile {
    let spool = spool.path();
    let settings = RegTree::for_spool(&spool).load().settings;
    PasswdFile::new(settings.passwd_path(&spool))
}

fn password_or_stdin(password: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = password {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!("no password given (use --password or write it to standard input)");
    }
    Ok(line)
}

pub(crate) fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            password,
            scheme,
            spool,
        } => {
            let file = passwd_file(&spool);
            file.add_user(&name, &password_or_stdin(password)?, scheme)?;
            println!("added {name} ({scheme}) to {}", file.path().display());
        }
        UserCommand::Passwd {
            name,
            password,
            scheme,
            spool,
        } => {
            let file = passwd_file(&spool);
            file.set_password(&name, &password_or_stdin(password)?, scheme)?;
            println!("changed the password of {name} ({scheme})");
        }
        UserCommand::Del { name, spool } => {
            passwd_file(&spool).delete_user(&name)?;
            println!("deleted {name}");
        }
        UserCommand::List { spool } => {
            for user in passwd_file(&spool).list_users()? {
                println!("{}\t{}", user.name, user.scheme);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
