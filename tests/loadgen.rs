//! Smoke tests of the load generator (`src/bin/hato-load`, used by `benches/compare.sh`): each
//! scenario, tiny, against a real hato, and the counts of its `RESULT` line must add up. No
//! timing is asserted: these are the benchmarks' tools, and a test machine may be busy.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{Server, Spool};

const LOAD: &str = env!("CARGO_BIN_EXE_hato-load");

/// A server whose users bench, bench1..bench4 (password benchpw) hold 5 seeded messages each,
/// with LMTP on an ephemeral port.
struct Bench {
    _spool: Spool,
    server: Server,
    lmtp: String,
}

impl Bench {
    fn start() -> Bench {
        let spool = Spool::new();
        for user in ["bench", "bench1", "bench2", "bench3", "bench4"] {
            spool.add_plain_user(user, "benchpw");
        }
        // idle and noop-storm log `bench` in many times from one address, like Outlook.
        spool.reg_set("MaxUserIpSessions", "0");
        let server = Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"]);
        let lmtp = server.announced("LMTP").expect("LMTP listener").to_string();
        let bench = Bench {
            _spool: spool,
            server,
            lmtp,
        };
        let seeded = load(&[
            "seed",
            "--lmtp",
            &bench.lmtp,
            "--users",
            "4",
            "--messages",
            "5",
        ]);
        assert_eq!(seeded["deliveries"], "25", "{seeded:?}");
        bench
    }

    /// Runs a scenario against this server (its IMAP address and pid added).
    fn run(&self, args: &[&str]) -> HashMap<String, String> {
        let imap = self.server.imap.to_string();
        let pid = self.server.pid().to_string();
        let mut all = args.to_vec();
        all.extend(["--imap", &imap, "--pid", &pid]);
        load(&all)
    }
}

/// Runs hato-load with `args`, asserts it succeeds, returns its RESULT line's fields.
fn load(args: &[&str]) -> HashMap<String, String> {
    let out = Command::new(LOAD)
        .args(args)
        .output()
        .expect("run hato-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hato-load {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from hato-load {args:?}:\n{stdout}"));
    result
        .split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(result: &HashMap<String, String>, key: &str) -> f64 {
    result
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {result:?}"))
}

#[test]
fn idle_holds_every_session_across_shards() {
    let bench = Bench::start();
    for mode in [&["--shards", "2"][..], &["--idle", "--shards", "3"][..]] {
        let mut args = vec!["idle", "--from", "3", "--to", "7", "--settle", "0.2"];
        args.extend(["--cpu-seconds", "0.5"]);
        args.extend(mode);
        let r = bench.run(&args);
        assert_eq!(r["alive"], "7", "{r:?}");
        assert!(number(&r, "kib_to") > 0.0, "{r:?}");
        assert!(r.contains_key("bytes_per_session"), "{r:?}");
        assert!(number(&r, "cpu_ms_per_min") >= 0.0, "{r:?}");
    }
}

#[test]
fn noop_storm_gets_answers() {
    let bench = Bench::start();
    let r = bench.run(&[
        "noop-storm",
        "--clients",
        "4",
        "--rate",
        "10",
        "--seconds",
        "1",
        "--probe",
        "--probe-seconds",
        "0.3",
    ]);
    assert!(number(&r, "answered") > 0.0, "{r:?}");
    assert_eq!(r["errors"], "0", "{r:?}");
    assert_eq!(r["lost"], "0", "{r:?}");
    assert!(r.contains_key("cpu_ms_per_1000"), "{r:?}");
    assert!(r.contains_key("probe_storm_p99_ms"), "{r:?}");
}

#[test]
fn every_wake_is_seen() {
    let bench = Bench::start();
    let r = bench.run(&[
        "wake",
        "--lmtp",
        &bench.lmtp,
        "--users",
        "4",
        "--deliveries",
        "8",
        "--rate",
        "20",
        "--wake-timeout",
        "30",
        "--shards",
        "2",
    ]);
    assert_eq!(r["delivered"], "8", "{r:?}");
    assert_eq!(r["seen"], "8", "{r:?}");
    assert_eq!(r["missed"], "0", "{r:?}");
    assert_eq!(r["failed"], "0", "{r:?}");
}

#[test]
fn mixed_workload_has_no_errors() {
    let bench = Bench::start();
    let r = bench.run(&["mixed", "--clients", "3", "--seconds", "1"]);
    assert!(number(&r, "ops") > 0.0, "{r:?}");
    assert!(number(&r, "sessions") > 0.0, "{r:?}");
    assert_eq!(r["errors"], "0", "{r:?}");
    assert_eq!(r["broken"], "0", "{r:?}");
}

#[test]
fn connect_logs_in() {
    let bench = Bench::start();
    let r = bench.run(&["connect", "--clients", "3", "--seconds", "1"]);
    assert!(number(&r, "logins") > 0.0, "{r:?}");
    assert_eq!(r["errors"], "0", "{r:?}");
}
