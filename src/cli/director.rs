//! `hato director`: answers nginx's mail `auth_http` requests, sending each user to the node
//! that owns them (see `crate::director`). `hato director --owner USER` prints that node.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tracing::{info, warn};

use super::SpoolArg;
use crate::auth::{PasswdFile, UserDirectory};
use crate::config::{RegTree, Settings, SharedSettings};
use crate::director::{self, Director};

#[derive(Debug, Args)]
pub(crate) struct DirectorArgs {
    #[command(flatten)]
    spool: SpoolArg,
    /// Listen address for nginx's auth_http requests (overrides DirectorListen.1).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Print the node that owns USER (name, address, and `down` if so) and exit. With `-`,
    /// read user names from standard input, one per line, and print `user name address` for
    /// each (to build an MTA transport map, or to see who moves when the node list changes).
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
}

/// `name address[ down]` of the node owning `user` (`-` for a node without a name).
fn owner_line(settings: &Settings, user: &str) -> String {
    match director::owner(settings, user) {
        Some(node) => {
            let name = node.name.as_deref().unwrap_or("-");
            let down = if node.down { " down" } else { "" };
            format!("{name} {}{down}", node.addr)
        }
        None => "-".to_string(),
    }
}

pub(crate) fn run(args: DirectorArgs) -> anyhow::Result<ExitCode> {
    let spool = args.spool.path();
    let tree = RegTree::for_spool(&spool);
    let report = tree.load();
    for problem in &report.problems {
        warn!("reg tree: {problem}");
    }
    let mut settings = report.settings;

    if let Some(user) = args.owner {
        if settings.director_nodes.is_empty() {
            bail!("DirectorNodes.1 in {} lists no node", tree.root().display());
        }
        if user != "-" {
            println!("{}", owner_line(&settings, &user));
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading user names from standard input")?;
            let user = line.trim();
            if !user.is_empty() {
                writeln!(out, "{user} {}", owner_line(&settings, user))?;
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(addr) = args.listen {
        settings.director_listen = addr;
    }
    if settings.director_nodes.is_empty() {
        warn!(
            "DirectorNodes.1 lists no node: every login will be refused until it does \
             (hato reg set DirectorNodes \"imap1 10.0.0.11:143, ...\")"
        );
    }
    let passwd = PasswdFile::new(settings.passwd_path(&spool));
    let users = Arc::new(UserDirectory::new(passwd));
    match users.user_count() {
        Ok(n) => info!("{n} users in {}", users.file().path().display()),
        Err(e) => warn!("{e}; logins fail until the passwd-file can be read"),
    }
    let addr = settings.director_listen;
    let shared = SharedSettings::new(settings);
    // Live reload (SIGHUP, inotify), before any other thread starts: it blocks SIGHUP for the
    // threads spawned afterwards.
    let _reload = crate::config::start_reload(tree, shared.clone())
        .context("starting the settings reload thread")?;
    let listener = Director::bind(addr)?;
    let bound = listener.local_addr().unwrap_or(addr);
    // One line on stdout that scripts (and the tests) wait for.
    println!("hato: listening for auth_http on {bound}");
    Arc::new(Director::new(shared, users)).serve(listener);
    Ok(ExitCode::SUCCESS)
}
