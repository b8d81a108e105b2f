//! `hato who`, `hato kick`, `hato reload`, `hato stats`: requests to a running server over its
//! admin socket (`<spool>/run/admin.sock`, see `runtime::admin`).

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::SpoolArg;
use crate::runtime::admin::socket_path;

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    spool: SpoolArg,
}

#[derive(Debug, Args)]
pub(crate) struct KickArgs {
    /// The user whose sessions are closed.
    user: String,
    /// Only the sessions from this client address.
    #[arg(long)]
    ip: Option<IpAddr>,
    #[command(flatten)]
    spool: SpoolArg,
}

/// Sends one request line; returns the answer's lines after its `ok` line.
fn request(spool: &SpoolArg, line: &str) -> anyhow::Result<Vec<String>> {
    let path = socket_path(&spool.path());
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "connecting to {} (is hato serve running on this spool, and are you root or its user?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A refusal may close the socket early; its answer is still there to read.
    let _ = writeln!(stream, "{line}");
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    if let Some(reason) = first.strip_prefix("error ") {
        bail!("{reason}");
    }
    let mut answer: Vec<String> = first
        .strip_prefix("ok")
        .map(str::trim)
        .filter(|rest| !rest.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect();
    for line in lines {
        answer.push(line?);
    }
    Ok(answer)
}

/// `hato who`: one line per session, like `doveadm who`.
pub(crate) fn who(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<Vec<String>> = request(&args.spool, "who")?
        .iter()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let header = [
        "USER", "ADDRESS", "WORKER", "STATE", "LINK", "IDLE(s)", "MAILBOX",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let print = |cells: &mut dyn Iterator<Item = &str>| {
        let line: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(&mut header.iter().copied());
    for row in &rows {
        print(&mut row.iter().map(String::as_str));
    }
    println!("{} sessions", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `hato kick USER [--ip IP]`.
pub(crate) fn kick(args: KickArgs) -> anyhow::Result<ExitCode> {
    let mut line = format!("kick {}", args.user);
    if let Some(ip) = args.ip {
        line.push_str(&format!(" {ip}"));
    }
    let answer = request(&args.spool, &line)?;
    let count = answer.first().map_or("0", String::as_str);
    println!("{count} sessions of {} closed", args.user);
    Ok(ExitCode::SUCCESS)
}

/// `hato reload`: the same as SIGHUP.
pub(crate) fn reload(args: AdminArgs) -> anyhow::Result<ExitCode> {
    request(&args.spool, "reload")?;
    println!("reload requested");
    Ok(ExitCode::SUCCESS)
}

/// `hato stats`: a one-screen summary of the counters Prometheus sees.
pub(crate) fn stats(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let samples: Vec<(String, f64)> = request(&args.spool, "stats")?
        .iter()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect();
    // Sum of the series of `name` whose labels contain every one of `labels`.
    let sum = |name: &str, labels: &[&str]| -> f64 {
        samples
            .iter()
            .filter(|(series, _)| {
                let bare = series.split('{').next().unwrap_or("");
                bare == name && labels.iter().all(|l| series.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    };
    let n = |v: f64| format!("{v:.0}");
    println!(
        "sessions     {} open of {} capacity: {} not logged in, {} authenticated, {} selected, {} in IDLE; {} over TLS",
        n(sum("hato_sessions", &[])),
        n(sum("hato_session_capacity", &[])),
        n(sum(
            "hato_sessions_by_state",
            &["state=\"not_authenticated\""]
        )),
        n(sum("hato_sessions_by_state", &["state=\"authenticated\""])),
        n(sum("hato_sessions_by_state", &["state=\"selected\""])),
        n(sum("hato_sessions_by_state", &["state=\"idle\""])),
        n(sum("hato_tls_sessions", &[])),
    );
    println!(
        "process      {} of {} descriptors, {:.1} MiB resident, {} workers",
        n(sum("hato_process_open_fds", &[])),
        n(sum("hato_process_max_fds", &[])),
        sum("hato_process_resident_memory_bytes", &[]) / 1_048_576.0,
        n(sum("hato_workers", &[])),
    );
    println!(
        "logins       {} ok, {} failed; TLS handshakes {} ok, {} failed",
        n(sum("hato_logins_total", &["result=\"success\""])),
        n(sum("hato_logins_total", &["result=\"failure\""])),
        n(sum("hato_tls_handshakes_total", &["result=\"ok\""])),
        n(sum("hato_tls_handshakes_total", &["result=\"failed\""])),
    );
    println!(
        "commands     {} answered ({} BAD); NOOP {} unchanged, {} changed",
        n(sum("hato_commands_total", &[])),
        n(sum("hato_commands_total", &["result=\"bad\""])),
        n(sum("hato_noop_total", &["outcome=\"unchanged\""])),
        n(sum("hato_noop_total", &["outcome=\"changed\""])),
    );
    println!(
        "IDLE         {} pushes relayed, {} mailbox checks; deliveries {} ok, {} failed",
        n(sum("hato_broadcast_events_total", &[])),
        n(sum("hato_idle_checks_total", &[])),
        n(sum("hato_deliveries_total", &["result=\"ok\""])),
        n(sum("hato_deliveries_total", &["result=\"failed\""])),
    );
    let limits: Vec<String> = samples
        .iter()
        .filter(|(series, v)| series.starts_with("hato_limit_hits_total{") && *v > 0.0)
        .filter_map(|(series, v)| {
            let label = series.split("limit=\"").nth(1)?.split('"').next()?;
            Some(format!("{label} {}", n(*v)))
        })
        .collect();
    println!(
        "limits hit   {}",
        if limits.is_empty() {
            "none".to_string()
        } else {
            limits.join(", ")
        }
    );
    println!(
        "reloads      {} ({} problems)",
        n(sum("hato_config_reloads_total", &[])),
        n(sum("hato_config_reload_errors_total", &[])),
    );
    Ok(ExitCode::SUCCESS)
}
