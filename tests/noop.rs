//! NOOP on a selected mailbox (`NOOPPoll.1`): free when nothing changed, reports changes when
//! something did, never looks when disabled.

mod common;

use common::Spool;

#[test]
fn ten_thousand_unchanged_noops_do_no_file_system_work() {
    let spool = Spool::new();
    // This test storms on purpose; the NOOPRateLimit.1 pacing has a test of its own.
    spool.reg_set("NOOPRateLimit", "0");
    let server = spool.start();
    let mut c = server.connect();
    assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
    c.send(b"a APPEND INBOX {19+}\r\nSubject: m1\r\n\r\nbody\r\n");
    assert!(c.until_tagged("a").1.starts_with("a OK"));
    assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    let scans = server.metric("hato_mailbox_scans_total").unwrap_or(0.0);
    // Pipelined in batches, as a storming Outlook would send them.
    for batch in 0..100 {
        let mut burst = Vec::new();
        for i in 0..100 {
            burst.extend_from_slice(format!("n{batch}.{i} NOOP\r\n").as_bytes());
        }
        c.send(&burst);
        for i in 0..100 {
            let (untagged, tagged) = c.until_tagged(&format!("n{batch}.{i}"));
            assert!(untagged.is_empty(), "{untagged:?}");
            assert_eq!(tagged, format!("n{batch}.{i} OK NOOP completed"));
        }
    }
    assert_eq!(
        server.metric("hato_mailbox_scans_total").unwrap_or(0.0),
        scans
    );
    assert_eq!(
        server.metric("hato_noop_total{outcome=\"unchanged\"}"),
        Some(10_000.0)
    );
}

#[test]
fn noop_reports_changes_and_nooppoll_0_never_looks() {
    let spool = Spool::new();
    let server = spool.start();
    let mut a = server.connect();
    let mut b = server.connect();
    for c in [&mut a, &mut b] {
        assert!(c.run("l", "LOGIN carol carol-pw").starts_with("l OK"));
        assert!(c.run("s", "SELECT INBOX").starts_with("s OK"));
    }
    a.send(b"x APPEND INBOX {19+}\r\nSubject: m1\r\n\r\nbody\r\n");
    assert!(a.until_tagged("x").1.starts_with("x OK"));
    b.send(b"n NOOP\r\n");
    let (untagged, _) = b.until_tagged("n");
    assert!(untagged.contains(&"* 1 EXISTS".to_string()), "{untagged:?}");
    assert_eq!(
        server.metric("hato_noop_total{outcome=\"changed\"}"),
        Some(1.0)
    );

    // NOOPPoll.1=0, applied live: NOOP no longer reports, other commands still do.
    spool.reg_set("NOOPPoll", "0");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    a.send(b"y APPEND INBOX {19+}\r\nSubject: m2\r\n\r\nbody\r\n");
    assert!(a.until_tagged("y").1.starts_with("y OK"));
    b.send(b"n2 NOOP\r\n");
    let (untagged, _) = b.until_tagged("n2");
    assert!(untagged.is_empty(), "{untagged:?}");
    assert!(
        server
            .metric("hato_noop_total{outcome=\"disabled\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    b.send(b"c CHECK\r\n");
    let (untagged, _) = b.until_tagged("c");
    assert!(untagged.contains(&"* 2 EXISTS".to_string()), "{untagged:?}");
}
