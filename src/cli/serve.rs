//! `hato serve`: loads the reg tree and users, makes a first-start spool usable, and runs the
//! server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tracing::warn;

use super::SpoolArg;
use crate::auth::{PasswdFile, Scheme, UserDirectory};
use crate::config::{RegTree, SharedSettings};
use crate::runtime::{self, ServeOptions};
use crate::store::Store;
use crate::tls::Tls;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    spool: SpoolArg,
    /// IMAP listen address (overrides ImapListen.1).
    #[arg(long, value_name = "ADDR:PORT")]
    imap: Option<SocketAddr>,
    /// Prometheus /metrics listen address (overrides MetricsListen.1).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// LMTP listen address (overrides LmtpListen.1).
    #[arg(long, value_name = "ADDR:PORT")]
    lmtp: Option<SocketAddr>,
    /// IMAPS listen address (overrides ImapsListen.1; used when a certificate is configured).
    #[arg(long, value_name = "ADDR:PORT")]
    imaps: Option<SocketAddr>,
}

/// The user created on a first start, so the quick start has someone to log in as.
const DEMO_USER: &str = "demo";

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // First, before any thread starts: every thread must inherit the blocked signals.
    let termination =
        runtime::shutdown::Termination::block().context("blocking SIGTERM and SIGINT")?;
    let spool = args.spool.path();
    std::fs::create_dir_all(&spool)
        .with_context(|| format!("creating the spool {}", spool.display()))?;
    let tree = RegTree::for_spool(&spool);
    tree.create_dirs()
        .with_context(|| format!("creating the reg tree {}", tree.root().display()))?;
    let report = tree.load();
    for problem in &report.problems {
        warn!("reg tree: {problem}");
    }
    let mut settings = report.settings;
    if let Some(addr) = args.imap {
        settings.imap_listen = addr;
    }
    if let Some(addr) = args.metrics {
        settings.metrics_listen = addr;
    }
    if let Some(addr) = args.lmtp {
        settings.lmtp_listen = addr;
    }
    if let Some(addr) = args.imaps {
        settings.imaps_listen = addr;
    }

    let passwd = PasswdFile::new(settings.passwd_path(&spool));
    if !passwd.exists() {
        create_demo_user(&passwd)?;
    }
    let users = Arc::new(UserDirectory::new(passwd));
    let store = Arc::new(Store::new(&spool));
    let lmtp_addr = settings.lmtp_listen;
    let tls = Arc::new(Tls::new(&spool, &settings));
    let shared = SharedSettings::new(settings);
    // Quota limits: the live QuotaStorage.1/QuotaMessages.1, overridden per user by the
    // passwd-file's quota_rule; enforced by the store on every write, IMAP and LMTP alike.
    store.set_quota_policy(Arc::new(crate::store::ConfiguredQuota::new(
        shared.clone(),
        users.file().clone(),
    )));
    // Live reload (SIGHUP, inotify); blocks SIGHUP here, before the workers inherit the mask.
    let _reload = crate::config::start_reload(tree, shared.clone())
        .context("starting the settings reload thread")?;
    // Threads start after the signals are blocked (they inherit the mask).
    tls.spawn_refresher(shared.clone())
        .context("starting the TLS certificate refresher")?;
    // LMTP after the reload thread (its threads inherit the blocked SIGHUP) and before the IMAP
    // line, which stays the last line scripts wait for. A failure to bind is not fatal: IMAP
    // is still served (and parallel test servers, which share the default port, keep working).
    match crate::lmtp::spawn(
        lmtp_addr,
        &spool,
        store.clone(),
        users.clone(),
        shared.clone(),
    ) {
        Ok(bound) => println!("hato: listening for LMTP on {bound}"),
        Err(e) => tracing::error!("{e}; serving IMAP without LMTP delivery"),
    }
    runtime::serve(ServeOptions {
        settings: shared,
        users,
        store,
        tls,
        on_ready: Box::new(|addr, tls_addr| {
            if let Some(tls_addr) = tls_addr {
                println!("hato: listening for IMAPS on {tls_addr}");
            }
            // One line on stdout that scripts (and the tests) wait for; the last one.
            println!("hato: listening for IMAP on {addr}");
            notify_systemd();
        }),
        termination: Some(termination),
        admin_spool: Some(spool.clone()),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd (`Type=notify`) that hato is ready: the listeners are bound. Without
/// `$NOTIFY_SOCKET` (not started by systemd) there is no one to tell.
fn notify_systemd() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            // An abstract socket name.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(b"READY=1", &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        warn!("cannot notify systemd of readiness: {e}");
    }
}

/// First start: a passwd-file with one user and a random password, printed once.
fn create_demo_user(passwd: &PasswdFile) -> anyhow::Result<()> {
    let password = random_password()?;
    passwd
        .add_user(DEMO_USER, &password, Scheme::Argon2id)
        .with_context(|| format!("creating {}", passwd.path().display()))?;
    print_first_start(passwd.path(), &password);
    Ok(())
}

fn random_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).context("reading random bytes for the demo password")?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn print_first_start(path: &Path, password: &str) {
    println!("hato: first start: created user \"{DEMO_USER}\" with password \"{password}\"");
    println!(
        "hato:   in {} (manage users with `hato user`)",
        path.display()
    );
}
