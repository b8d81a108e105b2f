//! Measuring the server from `/proc`: memory and CPU time of a process and all its
//! descendants, so that a server of one process (hato) and one of many (Dovecot: master,
//! login processes, one `imap` process per session, auth, lmtp) are measured alike.

use std::collections::HashMap;
use std::fs;

use anyhow::{Context as _, Result, bail};

/// Which memory figure of `/proc/<pid>/smaps_rollup`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Proportional set size: a page shared by n processes counts 1/n in each, so a
    /// multi-process server's shared libraries are counted once, not once per process.
    Pss,
    /// Resident set size: every page mapped, shared or not.
    Rss,
}

impl Measure {
    fn field(self) -> &'static str {
        match self {
            Measure::Pss => "Pss:",
            Measure::Rss => "Rss:",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Measure::Pss => "pss",
            Measure::Rss => "rss",
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses, hence the split at the last `)`); index 0 is the state (field 3 of proc(5)).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    // The state is a letter; keep positions by mapping it (and anything else) to 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// `pid` and every live descendant. Built from the parent field of every process in /proc,
/// which needs no kernel option (unlike `/proc/<pid>/task/<tid>/children`).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).copied()) {
                children.entry(ppid as u32).or_default().push(p);
            }
        }
    }
    let mut all = vec![pid];
    let mut next = 0;
    while next < all.len() {
        if let Some(kids) = children.get(&all[next]) {
            all.extend(kids);
        }
        next += 1;
    }
    all
}

/// Memory of `pid`'s process tree in KiB (processes that vanish meanwhile count 0).
pub fn memory_kib(pid: u32, measure: Measure) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(measure.field()))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// CPU time of `pid`'s process tree, in clock ticks: user + system time of every live
/// process, plus the times of the children each has reaped (cutime, cstime). The latter keeps
/// the figure whole when processes come and go during the measurement (Dovecot starts and
/// reaps an `imap` process per session): an exited process's time moves into its parent's
/// cutime/cstime when it is reaped, so it is neither lost nor counted twice. Only
/// differences of two readings mean anything.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    if stat_fields(pid).is_none() {
        bail!("no process {pid}");
    }
    Ok(tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        // utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 here.
        .map(|f| f.get(11..15).map_or(0, |t| t.iter().sum::<u64>()))
        .sum())
}

/// Clock ticks per second (`/proc/<pid>/stat` counts in these).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// CPU seconds of `pid`'s tree (see [`cpu_ticks`]).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / ticks_per_second() as f64)
}

/// The open-file hard limit of this process.
pub fn nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_max)
}

/// Raises the open-file soft limit to the hard limit: each session is one descriptor.
pub fn raise_nofile_limit() -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit");
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(memory_kib(me, Measure::Rss) > 0);
        assert!(memory_kib(me, Measure::Pss) > 0);
        assert!(cpu_ticks(me).is_ok());
        assert!(cpu_ticks(u32::MAX).is_err());
    }
}
