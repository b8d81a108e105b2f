//! The Grafana dashboard and the Prometheus alerting rules in `grafana/`, proven against the real
//! tools: Debian's `promtool` checks the rules and the example scrape configuration and runs a
//! unit test in which every alert fires on a sick server and none on a healthy one; a real
//! Prometheus scrapes a real `hato serve` under a short scripted load (logins that work and
//! fail, SELECT/FETCH/NOOP, sessions in IDLE woken by LMTP deliveries, TLS, limits hit, live
//! reloads) and must answer every panel query of the dashboard with data and every alert
//! expression without error; and every metric the dashboard and the rules name must be one the
//! server exports.
//!
//! Prometheus listens on 127.0.0.1 only, keeps its data in a temporary directory, and is killed
//! by pid when the test ends (and by the kernel if the test process dies first).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde_json::Value;

use common::pki::Pki;
use common::{Client, Server, Spool, ensure_command, free_port};

/// How long the live test waits, at most, for Prometheus to see everything.
const LIVE_LIMIT: Duration = Duration::from_secs(45);
/// What the dashboard's Grafana variables stand for in the queries sent to Prometheus.
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("${__rate_interval}", "30s"),
    ("$__rate_interval", "30s"),
    ("${__interval}", "15s"),
    ("$__interval", "15s"),
    ("${__range}", "1m"),
    ("$__range", "1m"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
];

/// Metrics an operator must find on the dashboard (each is exported; see `src/metrics.rs`,
/// `src/config/watch.rs`, `src/lmtp/mod.rs`, `src/runtime/folder_watch.rs`).
const DASHBOARD_METRICS: &[&str] = &[
    "hato_broadcast_events_total",
    "hato_command_duration_seconds",
    "hato_commands_total",
    "hato_config_reload_errors_total",
    "hato_config_reloads_total",
    "hato_deliveries_total",
    "hato_folder_events_total",
    "hato_idle_checks_total",
    "hato_idle_sessions",
    "hato_limit_hits_total",
    "hato_logins_total",
    "hato_mailbox_scans_total",
    "hato_noop_total",
    "hato_notify_latency_seconds",
    "hato_process_max_fds",
    "hato_process_open_fds",
    "hato_process_resident_memory_bytes",
    "hato_session_capacity",
    "hato_sessions",
    "hato_sessions_by_state",
    "hato_sessions_closed_total",
    "hato_tls_handshakes_total",
    "hato_tls_sessions",
    "hato_workers",
];

// ---------------------------------------------------------------------------------------------
// The files under test.

fn grafana_path(file: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "grafana", file]
        .iter()
        .collect()
}

fn grafana_file(file: &str) -> String {
    let path = grafana_path(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&grafana_file("hato.json")).expect("grafana/hato.json is JSON")
}

/// Every panel that is not a row, rows' nested (collapsed) panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

/// (panel title, query) for every target of every panel.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            out.push((format!("{title} [{}]", target["refId"]), expr.to_string()));
        }
    }
    out
}

/// A query as Prometheus gets it from Grafana (see [`SUBSTITUTIONS`]).
fn concrete(expr: &str) -> String {
    let mut out = expr.to_string();
    for (variable, value) in SUBSTITUTIONS {
        out = out.replace(variable, value);
    }
    assert!(!out.contains('$'), "unknown Grafana variable in {expr:?}");
    out
}

/// One alerting rule of `grafana/alerts.yml`: its name, expression and lines.
struct Rule {
    name: String,
    expr: String,
    lines: Vec<String>,
}

/// The rules, read line by line: every `expr:` is kept on one line in that file.
fn alert_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for line in grafana_file("alerts.yml").lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            rules.push(Rule {
                name: name.trim().to_string(),
                expr: String::new(),
                lines: Vec::new(),
            });
        } else if trimmed.starts_with("- name:") {
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            let expr = expr.trim();
            assert!(
                !expr.is_empty() && !expr.starts_with('|') && !expr.starts_with('>'),
                "{}: keep the expr on one line",
                rule.name
            );
            rule.expr = expr.to_string();
        }
        rule.lines.push(trimmed.to_string());
    }
    assert!(!rules.is_empty(), "no rules in grafana/alerts.yml");
    rules
}

/// The `hato_…` names a text mentions.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("hato_") {
        let start = i + found;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut end = start + "hato_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary && end > start + "hato_".len() {
            out.insert(text[start..end].trim_end_matches('_').to_string());
        }
        i = end;
    }
    out
}

/// The example scrape configuration with the target replaced by `target`, every interval by
/// `interval` and the rule file by its absolute path.
fn prometheus_config(target: SocketAddr, interval: &str) -> String {
    let rules = grafana_path("alerts.yml");
    let rules = rules.to_str().expect("utf-8 path");
    let mut out = String::new();
    let (mut targets, mut rule_files) = (0, 0);
    for line in grafana_file("prometheus.yml").lines() {
        let trimmed = line.trim();
        let line = if trimmed == "- alerts.yml" {
            rule_files += 1;
            line.replace("alerts.yml", rules)
        } else if trimmed.starts_with("- ") && trimmed.ends_with(":9143") {
            targets += 1;
            if targets > 1 {
                continue;
            }
            line.replace(&trimmed[2..], &target.to_string())
        } else {
            line.replace("15s", interval)
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        targets >= 1 && rule_files == 1,
        "grafana/prometheus.yml should have `- <host>:9143` targets and `- alerts.yml`"
    );
    out
}

// ---------------------------------------------------------------------------------------------
// promtool.

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// One instance of every series the rules read, all at alarming levels (one minute apart).
const SICK_SERVER: &str = r#"
      - series: 'up{job="hato", instance="a:9143"}'
        values: '0x30'
      - series: 'hato_sessions{job="hato", instance="a:9143", worker="0"}'
        values: '480x30'
      - series: 'hato_sessions{job="hato", instance="a:9143", worker="1"}'
        values: '470x30'
      - series: 'hato_session_capacity{job="hato", instance="a:9143"}'
        values: '1000x30'
      - series: 'hato_process_open_fds{job="hato", instance="a:9143"}'
        values: '960x30'
      - series: 'hato_process_max_fds{job="hato", instance="a:9143"}'
        values: '1024x30'
      - series: 'hato_noop_total{job="hato", instance="a:9143", outcome="unchanged"}'
        values: '0+1500000x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="sessions"}'
        values: '0+10x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="user_ip_evicted"}'
        values: '0+600x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="auth_throttled"}'
        values: '0+600x30'
      - series: 'hato_logins_total{job="hato", instance="a:9143", result="failure"}'
        values: '0+1200x30'
      - series: 'hato_logins_total{job="hato", instance="a:9143", result="success"}'
        values: '0+60x30'
      - series: 'hato_config_reload_errors_total{job="hato", instance="a:9143", kind="invalid"}'
        values: '0x20 1x10'
      - series: 'hato_deliveries_total{job="hato", instance="a:9143", via="lmtp", result="failed"}'
        values: '0+5x30'
      - series: 'hato_tls_handshakes_total{job="hato", instance="a:9143", result="failed", version="none"}'
        values: '0+600x30'
      - series: 'hato_tls_handshakes_total{job="hato", instance="a:9143", result="ok", version="1.3"}'
        values: '0+60x30'
      - series: 'hato_notify_latency_seconds_bucket{job="hato", instance="a:9143", le="1"}'
        values: '0+10x30'
      - series: 'hato_notify_latency_seconds_bucket{job="hato", instance="a:9143", le="2.5"}'
        values: '0+100x30'
      - series: 'hato_notify_latency_seconds_bucket{job="hato", instance="a:9143", le="+Inf"}'
        values: '0+100x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="SELECT", le="2.5"}'
        values: '0+1x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="SELECT", le="5"}'
        values: '0+100x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="SELECT", le="+Inf"}'
        values: '0+100x30'
"#;

/// A busy, healthy server of 50,000 sessions: Outlook-style polling, a few failed logins, an
/// eviction now and then, slow logins (AuthFailDelay.1). Nothing may fire.
const HEALTHY_SERVER: &str = r#"
      - series: 'up{job="hato", instance="a:9143"}'
        values: '1x30'
      - series: 'hato_sessions{job="hato", instance="a:9143", worker="0"}'
        values: '50000x30'
      - series: 'hato_session_capacity{job="hato", instance="a:9143"}'
        values: '1048000x30'
      - series: 'hato_process_open_fds{job="hato", instance="a:9143"}'
        values: '50030x30'
      - series: 'hato_process_max_fds{job="hato", instance="a:9143"}'
        values: '1048576x30'
      - series: 'hato_noop_total{job="hato", instance="a:9143", outcome="unchanged"}'
        values: '0+600000x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="sessions"}'
        values: '0x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="user_ip_evicted"}'
        values: '0+6x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="noop_rate"}'
        values: '0+60x30'
      - series: 'hato_limit_hits_total{job="hato", instance="a:9143", limit="auth_throttled"}'
        values: '0+6x30'
      - series: 'hato_logins_total{job="hato", instance="a:9143", result="failure"}'
        values: '0+30x30'
      - series: 'hato_logins_total{job="hato", instance="a:9143", result="success"}'
        values: '0+3000x30'
      - series: 'hato_config_reload_errors_total{job="hato", instance="a:9143", kind="invalid"}'
        values: '0x30'
      - series: 'hato_deliveries_total{job="hato", instance="a:9143", via="lmtp", result="ok"}'
        values: '0+6000x30'
      - series: 'hato_deliveries_total{job="hato", instance="a:9143", via="lmtp", result="failed"}'
        values: '0x30'
      - series: 'hato_tls_handshakes_total{job="hato", instance="a:9143", result="failed", version="none"}'
        values: '0+30x30'
      - series: 'hato_tls_handshakes_total{job="hato", instance="a:9143", result="ok", version="1.3"}'
        values: '0+3000x30'
      - series: 'hato_notify_latency_seconds_bucket{job="hato", instance="a:9143", le="0.005"}'
        values: '0+6000x30'
      - series: 'hato_notify_latency_seconds_bucket{job="hato", instance="a:9143", le="+Inf"}'
        values: '0+6000x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="SELECT", le="0.01"}'
        values: '0+600x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="SELECT", le="+Inf"}'
        values: '0+600x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="LOGIN", le="2.5"}'
        values: '0+3000x30'
      - series: 'hato_command_duration_seconds_bucket{job="hato", instance="a:9143", command="LOGIN", le="+Inf"}'
        values: '0+3000x30'
"#;

/// A `promtool test rules` file: on [`SICK_SERVER`] every alert of `rules` fires at minute 25,
/// on [`HEALTHY_SERVER`] none is even pending.
fn alert_unit_test(rules: &[Rule]) -> String {
    let mut firing = String::new();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for name in names {
        firing.push_str(&format!(
            "          - labels: '{{alertname=\"{name}\"}}'\n            value: 1\n"
        ));
    }
    format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 1m\ntests:\n\
         \x20 - interval: 1m\n    input_series:{SICK_SERVER}    promql_expr_test:\n\
         \x20     - expr: count by (alertname) (ALERTS{{alertstate=\"firing\"}})\n\
         \x20       eval_time: 25m\n        exp_samples:\n{firing}\
         \x20 - interval: 1m\n    input_series:{HEALTHY_SERVER}    promql_expr_test:\n\
         \x20     - expr: count by (alertname) (ALERTS)\n\
         \x20       eval_time: 25m\n        exp_samples: []\n",
        rules = grafana_path("alerts.yml").display(),
    )
}

#[test]
fn promtool_accepts_the_rules_and_the_example_config_and_each_alert_fires_when_it_should() {
    ensure_command("prometheus", "prometheus");
    ensure_command("promtool", "prometheus");
    let rules = grafana_path("alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().expect("utf-8")]);
    let count = alert_rules().len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "promtool saw another number of rules than the {count} alerts: {out}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    // The example as shipped (its rule file relative to it), then as a test runs it.
    promtool(&[
        "check",
        "config",
        grafana_path("prometheus.yml").to_str().expect("utf-8"),
    ]);
    let generated = dir.path().join("prometheus.yml");
    let target: SocketAddr = "127.0.0.1:9143".parse().expect("address");
    fs::write(&generated, prometheus_config(target, "1s")).expect("write config");
    promtool(&["check", "config", generated.to_str().expect("utf-8")]);

    let unit = dir.path().join("alerts_test.yml");
    fs::write(&unit, alert_unit_test(&alert_rules())).expect("write unit test");
    promtool(&["test", "rules", unit.to_str().expect("utf-8")]);
}

// ---------------------------------------------------------------------------------------------
// The dashboard's and the rules' shape.

#[test]
fn the_dashboard_and_the_rules_are_well_formed() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 38,
        "schemaVersion {} (Grafana 10+ needs 38 or more)",
        d["schemaVersion"]
    );
    let variables = d["templating"]["list"].as_array().expect("templating");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let instance = variable("instance");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["datasource"]["uid"], "${datasource}");
    assert_eq!(
        instance["definition"],
        "label_values(hato_workers, instance)"
    );

    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for row in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(row["id"].as_u64().expect("id")), "duplicate id");
        let (x, w) = (row["gridPos"]["x"].as_u64(), row["gridPos"]["w"].as_u64());
        assert!(
            matches!((x, w), (Some(x), Some(w)) if x + w <= 24),
            "gridPos of {}",
            row["title"]
        );
    }
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: data source is not ${{datasource}}"));
        }
        if panel["description"].as_str().unwrap_or_default().len() < 80 {
            problems.push(format!(
                "{title}: no description of what it means and what to do"
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "{title}: a target's data source is not ${{datasource}}"
                ));
            }
            if !expr.contains("instance=~\"$instance\"") {
                problems.push(format!("{title}: {expr} ignores $instance"));
            }
            // Windows come from Grafana, never hard-coded: `[$__rate_interval]` or `[$__range]`.
            for window in expr.split('[').skip(1) {
                let window = window.split(']').next().unwrap_or_default();
                if !matches!(window, "$__rate_interval" | "$__range") {
                    problems.push(format!("{title}: window [{window}] in {expr}"));
                }
            }
        }
    }
    let named = metric_tokens(&grafana_file("hato.json"));
    for metric in DASHBOARD_METRICS {
        let shown = named.contains(*metric)
            || named.contains(&format!("{metric}_bucket"))
            || named.contains(&format!("{metric}_count"));
        if !shown {
            problems.push(format!("no panel shows {metric}"));
        }
    }

    let mut names = BTreeSet::new();
    for rule in alert_rules() {
        if !names.insert(rule.name.clone()) {
            problems.push(format!("alert {} defined twice", rule.name));
        }
        for key in ["for:", "severity:", "summary:", "description:"] {
            if !rule.lines.iter().any(|l| l.starts_with(key)) {
                problems.push(format!("alert {} has no {key}", rule.name));
            }
        }
    }
    for needed in [
        "HatoDown",
        "HatoSessionsNearCapacity",
        "HatoFileDescriptorsNearLimit",
        "HatoNoopStorm",
        "HatoUserIpSessionCapSurge",
        "HatoLoginFailureSurge",
        "HatoAuthThrottling",
        "HatoConfigReloadErrors",
        "HatoNotifyLatencyHigh",
        "HatoTlsHandshakeFailures",
    ] {
        if !names.contains(needed) {
            problems.push(format!("no alert {needed}"));
        }
    }
    assert!(problems.is_empty(), "problems:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Talking to the server: LMTP, TLS, IMAP from another address.

/// Delivers one message over LMTP to each of `to`; panics unless every copy is stored.
fn deliver(lmtp: SocketAddr, to: &[&str]) {
    let stream = TcpStream::connect(lmtp).expect("connect LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let reply = |reader: &mut BufReader<TcpStream>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("LMTP reply");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    assert!(reply(&mut reader).starts_with("220"));
    let mut send = |reader: &mut BufReader<TcpStream>, line: &str| {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        reply(reader)
    };
    assert!(send(&mut reader, "LHLO load.example.org").starts_with("250"));
    assert!(send(&mut reader, "MAIL FROM:<load@example.org>").starts_with("250"));
    for user in to {
        let answer = send(&mut reader, &format!("RCPT TO:<{user}@example.com>"));
        assert!(answer.starts_with("250"), "RCPT {user}: {answer}");
    }
    assert!(send(&mut reader, "DATA").starts_with("354"));
    let answer = send(
        &mut reader,
        "Subject: load\r\nFrom: load@example.org\r\n\r\nA message for the dashboard.\r\n.",
    );
    assert!(answer.starts_with("250"), "DATA: {answer}");
    for _ in 1..to.len() {
        let answer = reply(&mut reader);
        assert!(answer.starts_with("250"), "DATA: {answer}");
    }
    let _ = send(&mut reader, "QUIT");
}

/// Writes a certificate for localhost (signed by a fresh test CA) and its key into `dir`;
/// returns their paths and a client configuration trusting the CA.
fn tls_certificate(dir: &Path) -> (PathBuf, PathBuf, Arc<ClientConfig>) {
    let pki = Pki::new();
    let leaf = pki.valid();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    fs::write(&key_path, &leaf.key).expect("write key");
    fs::write(&cert_path, &leaf.cert).expect("write certificate");
    (cert_path, key_path, pki.client)
}

/// An IMAP session over TLS.
struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsClient {
        let tcp = TcpStream::connect(addr).expect("connect IMAPS");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = ClientConnection::new(config.clone(), name).expect("TLS client");
        let mut client = TlsClient {
            reader: BufReader::new(StreamOwned::new(conn, tcp)),
        };
        let greeting = client.line();
        assert!(greeting.starts_with("* OK"), "IMAPS greeting: {greeting:?}");
        client
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read over TLS");
        line.trim_end().to_string()
    }

    fn run(&mut self, tag: &str, command: &str) -> String {
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("write over TLS");
        stream.flush().expect("flush");
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "TLS session closed before {tag}");
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
        }
    }
}

/// A connection to the IMAPS port that sends no TLS at all: a failed handshake.
fn failed_handshake(addr: SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let _ = stream.read_to_end(&mut Vec::new());
}

/// An IMAP connection from source address `from` (any 127.0.0.0/8 address works on loopback).
fn connect_from(server: SocketAddr, from: [u8; 4]) -> Client {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind source address");
    socket.connect(&server.into()).expect("connect");
    Client::greeted(TcpStream::from(socket))
}

fn login(server: SocketAddr, user: &str) -> Client {
    let mut client = Client::connect(server);
    let answer = client.run("L", &format!("LOGIN {user} {user}-pw"));
    assert!(answer.starts_with("L OK"), "LOGIN {user}: {answer}");
    client
}

/// A session of `user` in IDLE on INBOX.
fn idling(server: SocketAddr, user: &str) -> Client {
    let mut client = login(server, user);
    assert!(client.run("S", "SELECT INBOX").starts_with("S OK"));
    client.send(b"I IDLE\r\n");
    let cont = client.line();
    assert!(cont.starts_with("+ "), "IDLE: {cont}");
    client
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET over HTTP/1.0 (no chunked answers): the status code and the body.
fn http_get(addr: SocketAddr, target: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP header end in {text:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// A Prometheus server of its own; killed (by pid) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // SAFETY: prctl(2) is async-signal-safe and touches nothing of the parent; it makes
        // the kernel kill Prometheus if this test dies without dropping it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn prometheus");
        let prometheus = Prometheus { child, addr, dir };
        prometheus.wait_until("ready", Duration::from_secs(30), || {
            matches!(http_get(addr, "/-/ready"), Ok((200, _)))
        });
        prometheus
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `ok` every 200 ms until it holds; panics (with Prometheus's log) after `limit`.
    fn wait_until(&self, what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "Prometheus: {what} not within {limit:?}; its log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// An API call's `data`, or why it failed.
    fn api(&self, target: &str) -> Result<Value, String> {
        let (code, body) = http_get(self.addr, target).map_err(|e| e.to_string())?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {code}, {e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!(
                "HTTP {code}: {} {}",
                answer["errorType"], answer["error"]
            ));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query's result (its samples), or why it failed.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The live test.

/// What the scripted load must make Prometheus see (each query returns data once it has).
const LOAD_EVIDENCE: &[&str] = &[
    r#"sum(hato_logins_total{result="failure"}) > 0"#,
    r#"sum(hato_logins_total{result="success"}) > 0"#,
    r#"sum(hato_commands_total{result="no"}) > 0"#,
    r#"sum(hato_commands_total{result="bad"}) > 0"#,
    r#"sum(hato_commands_total{command="FETCH"}) > 0"#,
    r#"sum(hato_noop_total{outcome="changed"}) > 0"#,
    r#"sum(hato_noop_total{outcome="unchanged"}) > 0"#,
    r#"sum(hato_idle_sessions) >= 2"#,
    r#"sum(hato_sessions_by_state{state="idle"}) >= 2"#,
    r#"sum(hato_tls_sessions) >= 1"#,
    r#"sum(hato_idle_checks_total) > 0"#,
    r#"sum(hato_broadcast_events_total) > 0"#,
    r#"sum(hato_notify_latency_seconds_count) > 0"#,
    r#"sum(hato_folder_events_total) > 0"#,
    r#"sum(hato_mailbox_scans_total) > 0"#,
    r#"sum(hato_deliveries_total{via="lmtp", result="ok"}) > 0"#,
    r#"sum(hato_limit_hits_total{limit="user_ip_evicted"}) > 0"#,
    r#"sum(hato_sessions_closed_total{reason="evicted"}) > 0"#,
    r#"sum(hato_sessions_closed_total{reason="logout"}) > 0"#,
    r#"sum(hato_limit_hits_total{limit="bad_commands"}) > 0"#,
    r#"sum(hato_limit_hits_total{limit="noop_rate"}) > 0"#,
    r#"sum(hato_limit_hits_total{limit="auth_throttled"}) > 0"#,
    r#"sum(hato_tls_handshakes_total{result="ok"}) > 0"#,
    r#"sum(hato_tls_handshakes_total{result="failed"}) > 0"#,
    r#"sum(hato_config_reloads_total) > 0"#,
    r#"sum(hato_config_reload_errors_total{kind="invalid"}) > 0"#,
    r#"sum(hato_process_open_fds) > 0"#,
    r#"sum(hato_process_resident_memory_bytes) > 0"#,
];

/// A spool set up for the load: limits low enough to be hit, IDLELoop at 1 s, TLS.
fn load_spool() -> (Spool, Arc<ClientConfig>) {
    let spool = Spool::new();
    for user in ["dave", "erin", "frank", "grace"] {
        spool.add_plain_user(user, &format!("{user}-pw"));
    }
    spool.reg_set("Workers", "2");
    spool.reg_set("IDLELoop", "1");
    spool.reg_set("MaxUserIpSessions", "2");
    spool.reg_set("MaxBadCommands", "3");
    spool.reg_set("NOOPRateLimit", "5");
    spool.reg_set("AuthThrottleAfter", "2");
    spool.reg_set("AuthThrottleMaxDelay", "1");
    let tls = spool.path().join("tls");
    fs::create_dir_all(&tls).expect("tls dir");
    let (cert, key, client) = tls_certificate(&tls);
    spool.reg_set("TlsCertificate", cert.to_str().expect("utf-8"));
    spool.reg_set("TlsKey", key.to_str().expect("utf-8"));
    (spool, client)
}

/// The load, until `stop`: commands and paced NOOPs on a selected INBOX, deliveries that wake
/// the IDLE sessions, logins and logouts, user+IP evictions, sessions ended by bad commands,
/// failed TLS handshakes.
fn run_load(imap: SocketAddr, imaps: SocketAddr, lmtp: SocketAddr, stop: &AtomicBool) {
    let mut erin = login(imap, "erin");
    assert!(erin.run("s", "SELECT INBOX").starts_with("s OK"));
    let mut carol: VecDeque<Client> = VecDeque::new();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        deliver(lmtp, &["dave", "erin"]);
        // Faster than NOOPRateLimit.1 (5/s): after the burst, answers are paced.
        for i in 0..8 {
            erin.run(&format!("n{i}"), "NOOP");
        }
        erin.run("f", "FETCH 1:* (FLAGS RFC822.SIZE)");
        erin.run("u", "UID FETCH 1:* (FLAGS)");
        erin.run("x", "SEARCH ALL");
        erin.run("y", "SELECT Nonexistent");
        erin.run("s", "SELECT INBOX");
        // A login and a logout.
        let mut grace = login(imap, "grace");
        grace.run("l", "LIST \"\" \"*\"");
        grace.run("z", "LOGOUT");
        // carol keeps opening sessions from one address, over MaxUserIpSessions.1 (2): the
        // oldest is evicted each time.
        carol.push_back(login(imap, "carol"));
        if carol.len() > 3 {
            carol.pop_front();
        }
        // Garbage until MaxBadCommands.1 (3) ends the session.
        let mut bad = Client::connect(imap);
        bad.send(b"1 FROB\r\n2 FROB\r\n3 FROB\r\n");
        bad.closed();
        failed_handshake(imaps);
        if round % 5 == 0 {
            erin.run("a", "CHECK");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Failed logins from 127.0.0.3, until `stop`; after AuthThrottleAfter.1 they are throttled.
fn run_failed_logins(imap: SocketAddr, stop: &AtomicBool) {
    let mut client = connect_from(imap, [127, 0, 0, 3]);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let answer = client.run(&format!("f{n}"), "LOGIN erin wrong-password");
        assert!(answer.contains(" NO "), "a wrong password: {answer}");
    }
}

#[test]
fn every_panel_query_has_data_and_every_alert_query_runs_against_a_live_prometheus() {
    ensure_command("prometheus", "prometheus");
    let started = Instant::now();
    let (spool, tls_client) = load_spool();
    let server = Server::start_with(
        spool.path(),
        &["--lmtp", "127.0.0.1:0", "--imaps", "127.0.0.1:0"],
    );
    let lmtp = server.announced("LMTP").expect("LMTP address announced");
    let imaps = server.announced("IMAPS").expect("IMAPS address announced");
    let prometheus = Prometheus::start(&prometheus_config(server.metrics, "1s"));

    // Sessions that stay open during the whole test: two in IDLE (woken by the deliveries),
    // one over TLS.
    deliver(lmtp, &["dave", "erin", "frank"]);
    let idle: Vec<Client> = (0..2).map(|_| idling(server.imap, "dave")).collect();
    let mut tls = TlsClient::connect(imaps, &tls_client);
    assert!(tls.run("l", "LOGIN frank frank-pw").starts_with("l OK"));
    assert!(tls.run("s", "SELECT INBOX").starts_with("s OK"));

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let imap = server.imap;
        thread::spawn(move || run_load(imap, imaps, lmtp, &stop))
    };
    let failing = {
        let stop = stop.clone();
        let imap = server.imap;
        thread::spawn(move || run_failed_logins(imap, &stop))
    };

    prometheus.wait_until("hato scraped", Duration::from_secs(20), || {
        prometheus
            .query("up{job=\"hato\"} == 1")
            .is_ok_and(|r| !r.is_empty())
    });
    // Live reloads once Prometheus has seen the counters at zero: one good, one bad file.
    spool.reg_set("IdleKeepalive", "60");
    let bad_file = spool
        .path()
        .join("reg/epost/ims/EPST5IMAP4S/MaxPipelined.1");
    fs::write(&bad_file, "plenty\n").expect("write an invalid setting");

    // Every panel query, plus what the load must have caused.
    let d = dashboard();
    let mut pending: BTreeMap<String, String> = panel_queries(&d)
        .into_iter()
        .map(|(title, expr)| (format!("panel {title}"), concrete(&expr)))
        .collect();
    let instance = d["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "instance"))
        .and_then(|v| v["definition"].as_str())
        .expect("instance variable");
    assert_eq!(instance, "label_values(hato_workers, instance)");
    pending.insert(
        "variable instance".into(),
        "count by (instance) (hato_workers)".into(),
    );
    for expr in LOAD_EVIDENCE {
        pending.insert(format!("load {expr}"), expr.to_string());
    }

    // Every alert expression must parse and run (whether it returns anything depends on the
    // load); the rules must be loaded and evaluated without error.
    let rules = alert_rules();
    let mut failures = Vec::new();
    for rule in &rules {
        if let Err(e) = prometheus.query(&rule.expr) {
            failures.push(format!("alert {}: {}\n    {e}", rule.name, rule.expr));
        }
    }

    // Poll (bounded) until every query has returned data once.
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Instant::now() + LIVE_LIMIT;
    let mut loaded_rules = BTreeMap::new();
    let mut reload_alert = false;
    loop {
        pending.retain(|what, expr| match prometheus.query(expr) {
            Ok(result) if !result.is_empty() => {
                errors.remove(what);
                false
            }
            Ok(_) => true,
            // A query Prometheus cannot parse will not get better by waiting.
            Err(e) if e.contains("bad_data") => {
                failures.push(format!("{what}: {expr}\n    {e}"));
                false
            }
            Err(e) => {
                errors.insert(what.clone(), e);
                true
            }
        });
        if let Ok(data) = prometheus.api("/api/v1/rules?type=alert") {
            loaded_rules.clear();
            for group in data["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    let name = rule["name"].as_str().unwrap_or_default().to_string();
                    let health = format!("{} {}", rule["health"], rule["lastError"]);
                    loaded_rules.insert(name, health);
                }
            }
        }
        if let Ok(data) = prometheus.api("/api/v1/alerts") {
            reload_alert |= data["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["labels"]["alertname"] == "HatoConfigReloadErrors");
        }
        let rules_ok = loaded_rules.len() == rules.len()
            && loaded_rules.values().all(|h| h.starts_with("\"ok\""));
        if (pending.is_empty() && rules_ok && reload_alert) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let scraped_for = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    failing.join().expect("failed-login thread");
    drop(idle);
    spool.reg_set("MaxPipelined", "64");

    for (what, expr) in &pending {
        let why = errors
            .get(what)
            .map_or("no data".to_string(), |e| e.clone());
        failures.push(format!("{what}: {expr}\n    {why}"));
    }
    for rule in &rules {
        match loaded_rules.get(&rule.name) {
            Some(health) if health.starts_with("\"ok\"") => {}
            other => failures.push(format!("rule {} loaded as {other:?}", rule.name)),
        }
    }
    if !reload_alert {
        failures.push("HatoConfigReloadErrors did not go pending after an invalid file".into());
    }
    assert!(
        failures.is_empty(),
        "after {scraped_for:?}, {} failed:\n{}\nPrometheus log:\n{}",
        failures.len(),
        failures.join("\n"),
        prometheus.log()
    );
    eprintln!(
        "{} panel queries, {} alert expressions and the load checks passed after {scraped_for:?}",
        panel_queries(&d).len(),
        rules.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Names.

/// The metric names an exposition declares (`# TYPE`), with their types.
fn exported(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The names of `referenced` that `exported` lacks (`_bucket`, `_sum`, `_count` of a histogram
/// count as the histogram).
fn missing(referenced: &BTreeSet<String>, exported: &BTreeMap<String, String>) -> Vec<String> {
    referenced
        .iter()
        .filter(|name| {
            if exported.contains_key(name.as_str()) {
                return false;
            }
            let histogram = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|base| exported.get(base))
                    .is_some_and(|kind| kind == "histogram")
            });
            !histogram
        })
        .cloned()
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_name_is_exported() {
    let spool = Spool::new();
    spool.add_plain_user("dave", "dave-pw");
    let server = Server::start_with(spool.path(), &["--lmtp", "127.0.0.1:0"]);
    let lmtp = server.announced("LMTP").expect("LMTP address announced");

    let mut referenced = metric_tokens(&grafana_file("hato.json"));
    referenced.extend(metric_tokens(&grafana_file("alerts.yml")));
    assert!(
        referenced.len() >= DASHBOARD_METRICS.len(),
        "too few metric names found: {referenced:?}"
    );

    // A tiny load: a failed login, a session in IDLE woken by a delivery, NOOPs.
    let mut wrong = Client::connect(server.imap);
    assert!(wrong.run("a", "LOGIN dave nope").starts_with("a NO"));
    deliver(lmtp, &["dave"]);
    let mut dave = idling(server.imap, "dave");
    deliver(lmtp, &["dave"]);
    let mut poller = login(server.imap, "dave");
    assert!(poller.run("s", "SELECT INBOX").starts_with("s OK"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let (names, lacking) = loop {
        let names = exported(&server.scrape());
        let lacking = missing(&referenced, &names);
        if lacking.is_empty() || Instant::now() > deadline {
            break (names, lacking);
        }
        poller.run("n", "NOOP");
        deliver(lmtp, &["dave"]);
        thread::sleep(Duration::from_millis(200));
    };
    dave.send(b"DONE\r\n");
    assert!(
        lacking.is_empty(),
        "grafana/ names metrics the server does not export: {lacking:?}\nexported: {:?}",
        names.keys().collect::<Vec<_>>()
    );
    let unused: Vec<&String> = names.keys().filter(|n| !referenced.contains(*n)).collect();
    if !unused.is_empty() {
        eprintln!("exported but on no panel or alert: {unused:?}");
    }
}
