//! Tests of the table, the tree and the shared snapshot.

use std::fs;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

fn def(name: &str) -> &'static SettingDef {
    match find(name) {
        Some(d) => d,
        None => panic!("no setting {name}"),
    }
}

fn tree() -> (TempDir, RegTree) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = RegTree::for_spool(dir.path());
    (dir, tree)
}

fn write(tree: &RegTree, file: &str, content: impl AsRef<[u8]>) {
    fs::create_dir_all(tree.root()).expect("mkdir");
    fs::write(tree.root().join(file), content).expect("write");
}

fn dir_names(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(path)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A value in range that differs from the default.
fn non_default(d: &SettingDef) -> String {
    match d.kind {
        SettingKind::Flag | SettingKind::Number => {
            let default: u64 = d.default.parse().expect("numeric default");
            if default == d.max { d.min } else { d.max }.to_string()
        }
        SettingKind::SocketAddr => "[::1]:4242".to_string(),
        SettingKind::Path => "/srv/users".to_string(),
        SettingKind::Name => "mail".to_string(),
        SettingKind::List => match d.id {
            SettingId::DirectorNodes => "imap1 10.0.0.11:143, imap2 10.0.0.12:143".to_string(),
            _ => "10.0.0.0/8, ::1/128".to_string(),
        },
    }
}

/// Settings equal to the defaults except for `d`, which holds `non_default(d)`.
fn previous_for(d: &SettingDef) -> Settings {
    let mut s = Settings::default();
    s.apply(d, &non_default(d))
        .expect("non-default value applies");
    assert_ne!(s, Settings::default(), "{}", d.name);
    s
}

// ---- the table ----

#[test]
fn table_is_consistent() {
    let defs = definitions();
    assert_eq!(defs.len(), 36);
    for (i, d) in defs.iter().enumerate() {
        assert_eq!(d.id as usize, i, "{} out of SettingId order", d.name);
        assert!(std::ptr::eq(def_of(d.id), d));
        assert!(!d.name.ends_with(FILE_SUFFIX));
        assert!(!d.meaning.is_empty());
        assert_eq!(d.validate(d.default), Ok(()), "{} default invalid", d.name);
        assert_eq!(defs.iter().filter(|o| o.name == d.name).count(), 1);
        match d.kind {
            SettingKind::Flag => assert_eq!(d.range(), Some((0, 1))),
            SettingKind::Number => {
                assert!(d.min <= d.max);
                assert!(!d.unit.is_empty());
            }
            SettingKind::SocketAddr | SettingKind::Path | SettingKind::Name | SettingKind::List => {
                assert_eq!(d.range(), None)
            }
        }
    }
}

#[test]
fn table_matches_epost_names_and_defaults() {
    let expect = [
        ("IDLECmd", "1"),
        ("IDLELoop", "5"),
        ("IDLETimeout", "30"),
        ("Broadcast", "1"),
        ("NOOPPoll", "1"),
        ("Workers", "0"),
        ("ImapListen", "127.0.0.1:1143"),
        ("MetricsListen", "127.0.0.1:9143"),
        ("LmtpListen", "127.0.0.1:2424"),
        ("PasswdFile", ""),
        ("MaxLineLength", "65536"),
        ("MaxLiteralSize", "52428800"),
        ("AuthFailDelay", "2000"),
        ("PreauthTimeout", "60"),
        ("IdleKeepalive", "120"),
        ("IdleTimeoutSeconds", "0"),
        ("MaxSessions", "0"),
        ("MaxUserIpSessions", "10"),
        ("UserIpEvict", "1"),
        ("NOOPRateLimit", "20"),
        ("MaxBadCommands", "20"),
        ("MaxPipelined", "64"),
        ("AuthThrottleAfter", "5"),
        ("AuthThrottleMaxDelay", "30"),
        ("ShutdownGrace", "10"),
        ("TlsCertificate", ""),
        ("TlsKey", ""),
        ("ImapsListen", "127.0.0.1:1993"),
        ("PlaintextAuth", "1"),
        ("RunAsUser", ""),
        ("RunAsGroup", ""),
        ("ProxyProtocolFrom", ""),
        ("DirectorListen", "127.0.0.1:8143"),
        ("DirectorNodes", ""),
        ("QuotaStorage", "0"),
        ("QuotaMessages", "0"),
    ];
    let got: Vec<(&str, &str)> = definitions().iter().map(|d| (d.name, d.default)).collect();
    assert_eq!(got, expect);
    assert_eq!(def("IDLELoop").unit, "seconds");
    assert_eq!(def("IDLETimeout").unit, "minutes");
    assert_eq!(def("AuthFailDelay").unit, "milliseconds");
}

#[test]
fn find_accepts_suffix_and_is_case_sensitive() {
    assert_eq!(find("IDLELoop").map(|d| d.id), Some(SettingId::IdleLoop));
    assert_eq!(find("IDLELoop.1").map(|d| d.id), Some(SettingId::IdleLoop));
    assert!(find("idleloop").is_none());
    assert!(find("IDLELoop.1.1").is_none());
    assert!(find("IDLELoop.2").is_none());
    assert!(find("").is_none());
    assert_eq!(suggest("idleloop.1").as_deref(), Some("IDLELoop.1"));
    assert_eq!(suggest("NoopPoll").as_deref(), Some("NOOPPoll.1"));
    assert_eq!(suggest("Nope"), None);
}

// ---- loading ----

#[test]
fn defaults_when_directory_missing() {
    let (_dir, tree) = tree();
    assert!(!tree.root().exists());
    let r = tree.load();
    assert_eq!(r.settings, Settings::default());
    assert!(r.problems.is_empty());
    // Missing directory means defaults even over a non-default previous.
    let r = tree.load_over(&previous_for(def("IDLELoop")));
    assert_eq!(r.settings, Settings::default());
}

#[test]
fn root_is_under_spool() {
    let t = RegTree::for_spool(Path::new("/var/spool/epms"));
    assert_eq!(
        t.root(),
        Path::new("/var/spool/epms/reg/epost/ims/EPST5IMAP4S")
    );
    assert_eq!(
        t.path_of(def("IDLECmd")),
        Path::new("/var/spool/epms/reg/epost/ims/EPST5IMAP4S/IDLECmd.1")
    );
}

#[test]
fn empty_directory_gives_defaults() {
    let (_dir, tree) = tree();
    tree.create_dirs().expect("create");
    let r = tree.load();
    assert_eq!(r.settings, Settings::default());
    assert!(r.problems.is_empty());
}

#[test]
fn epost_files_tolerate_whitespace() {
    for content in ["0", "0\n", " 0 ", "\r\n0\r\n", "\t0\t\n\n", "\u{feff}0\r\n"] {
        let (_dir, tree) = tree();
        write(&tree, "IDLECmd.1", content);
        write(&tree, "Broadcast.1", content);
        write(&tree, "NOOPPoll.1", content);
        let r = tree.load();
        assert!(r.problems.is_empty(), "{content:?}: {:?}", r.problems);
        assert!(!r.settings.idle_cmd, "{content:?}");
        assert!(!r.settings.broadcast, "{content:?}");
        assert!(!r.settings.noop_poll, "{content:?}");
    }
    for (content, n) in [("10", 10), ("10\n", 10), ("  1440\r\n", 1440), ("007", 7)] {
        let (_dir, tree) = tree();
        write(&tree, "IDLELoop.1", content);
        write(&tree, "IDLETimeout.1", content);
        let r = tree.load();
        assert!(r.problems.is_empty(), "{content:?}: {:?}", r.problems);
        assert_eq!(r.settings.idle_loop, Duration::from_secs(n));
        assert_eq!(r.settings.idle_timeout, Duration::from_secs(n * 60));
    }
}

#[test]
fn every_setting_is_read() {
    let (_dir, tree) = tree();
    let files = [
        ("IDLECmd.1", "0\n"),
        ("IDLELoop.1", "9\n"),
        ("IDLETimeout.1", "15\n"),
        ("Broadcast.1", "0\n"),
        ("NOOPPoll.1", "0\n"),
        ("Workers.1", "4\n"),
        ("ImapListen.1", "0.0.0.0:143\n"),
        ("MetricsListen.1", "[::]:9100\n"),
        ("LmtpListen.1", " 10.0.0.1:24 \n"),
        ("PasswdFile.1", "/etc/hato/passwd\n"),
        ("MaxLineLength.1", "8192\n"),
        ("MaxLiteralSize.1", "1048576\n"),
        ("AuthFailDelay.1", "0\n"),
        ("PreauthTimeout.1", "120\n"),
        ("IdleKeepalive.1", "30\n"),
        ("IdleTimeoutSeconds.1", "7\n"),
        ("MaxSessions.1", "50000\n"),
        ("MaxUserIpSessions.1", "3\n"),
        ("UserIpEvict.1", "0\n"),
        ("NOOPRateLimit.1", "2\n"),
        ("MaxBadCommands.1", "5\n"),
        ("MaxPipelined.1", "8\n"),
        ("AuthThrottleAfter.1", "0\n"),
        ("AuthThrottleMaxDelay.1", "60\n"),
        ("ShutdownGrace.1", "1\n"),
        ("TlsCertificate.1", "tls/cert.pem\n"),
        ("TlsKey.1", "/etc/hato/key.pem\n"),
        ("ImapsListen.1", "0.0.0.0:993\n"),
        ("PlaintextAuth.1", "2\n"),
        ("RunAsUser.1", "hato\n"),
        ("RunAsGroup.1", "mail\n"),
        ("ProxyProtocolFrom.1", "10.0.0.7, 10.1.0.0/16\n"),
        ("DirectorListen.1", "10.0.0.1:8143\n"),
        (
            "DirectorNodes.1",
            "imap1 10.0.0.11:143\nimap2 10.0.0.12:143 down\n",
        ),
        ("QuotaStorage.1", "1048576\n"),
        ("QuotaMessages.1", "10000\n"),
    ];
    for (f, c) in files {
        write(&tree, f, c);
    }
    let r = tree.load();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let expect = Settings {
        idle_cmd: false,
        idle_loop: Duration::from_secs(9),
        idle_timeout: Duration::from_secs(15 * 60),
        broadcast: false,
        noop_poll: false,
        workers: 4,
        imap_listen: "0.0.0.0:143".parse().expect("addr"),
        metrics_listen: "[::]:9100".parse().expect("addr"),
        lmtp_listen: "10.0.0.1:24".parse().expect("addr"),
        passwd_file: Some("/etc/hato/passwd".into()),
        max_line_length: 8192,
        max_literal_size: 1_048_576,
        auth_fail_delay: Duration::ZERO,
        preauth_timeout: Duration::from_secs(120),
        idle_keepalive: Duration::from_secs(30),
        idle_timeout_seconds: 7,
        max_sessions: 50_000,
        max_user_ip_sessions: 3,
        user_ip_evict: false,
        noop_rate_limit: 2,
        max_bad_commands: 5,
        max_pipelined: 8,
        auth_throttle_after: 0,
        auth_throttle_max_delay: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        tls_certificate: Some("tls/cert.pem".into()),
        tls_key: Some("/etc/hato/key.pem".into()),
        imaps_listen: "0.0.0.0:993".parse().expect("addr"),
        plaintext_auth: crate::config::PlaintextAuth::Always,
        run_as_user: Some("hato".into()),
        run_as_group: Some("mail".into()),
        proxy_protocol_from: vec![
            "10.0.0.7/32".parse().expect("net"),
            "10.1.0.0/16".parse().expect("net"),
        ],
        director_listen: "10.0.0.1:8143".parse().expect("addr"),
        director_nodes: vec![
            DirectorNode {
                name: Some("imap1".into()),
                addr: "10.0.0.11:143".parse().expect("addr"),
                down: false,
            },
            DirectorNode {
                name: Some("imap2".into()),
                addr: "10.0.0.12:143".parse().expect("addr"),
                down: true,
            },
        ],
        quota_storage: 1_048_576,
        quota_messages: 10_000,
    };
    assert_eq!(r.settings, expect);
}

#[test]
fn bad_numbers_keep_previous_value() {
    for d in definitions().iter().filter(|d| d.kind.is_numeric()) {
        let mut bad: Vec<String> = [
            "abc",
            "-1",
            "",
            "  \n",
            "99999999999999999999999",
            "0x10",
            "1.5",
            "+1",
            "1 2",
            "１",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        bad.push((d.max + 1).to_string());
        if d.min > 0 {
            bad.push((d.min - 1).to_string());
        }
        let previous = previous_for(d);
        for value in &bad {
            let (_dir, tree) = tree();
            write(&tree, &d.file_name(), value);
            let r = tree.load_over(&previous);
            assert_eq!(
                r.settings, previous,
                "{} = {value:?} did not keep the previous value",
                d.name
            );
            assert_eq!(r.problems.len(), 1, "{} = {value:?}", d.name);
            let p = &r.problems[0];
            assert_eq!(p.kind, ProblemKind::Invalid);
            assert_eq!(p.path, tree.path_of(d));
            assert!(!p.reason.is_empty());
            // On a first load the "previous" is the default.
            assert_eq!(tree.load().settings, Settings::default());
        }
    }
}

#[test]
fn out_of_range_reason_names_the_range() {
    let (_dir, tree) = tree();
    write(&tree, "IDLELoop.1", "0\n");
    write(&tree, "IDLECmd.1", "2\n");
    let r = tree.load();
    assert_eq!(r.problems.len(), 2);
    assert!(r.problems[0].reason.contains("0..=1") || r.problems[0].reason.contains("0 or 1"));
    assert!(
        r.problems[1].reason.contains("1..=3600"),
        "{}",
        r.problems[1]
    );
}

#[test]
fn bad_text_values_keep_previous_value() {
    for name in ["ImapListen", "MetricsListen", "LmtpListen"] {
        let d = def(name);
        let previous = previous_for(d);
        for value in [
            "",
            "\n",
            "localhost:143",
            "127.0.0.1",
            "127.0.0.1:65536",
            "1.2.3.4:5\n6.7.8.9:10",
            "abc",
        ] {
            let (_dir, tree) = tree();
            write(&tree, &d.file_name(), value);
            let r = tree.load_over(&previous);
            assert_eq!(r.settings, previous, "{name} = {value:?}");
            assert_eq!(r.problems.len(), 1);
            assert_eq!(r.problems[0].kind, ProblemKind::Invalid);
        }
    }
    let d = def("PasswdFile");
    let previous = previous_for(d);
    let (_dir, tree) = tree();
    write(&tree, "PasswdFile.1", "/a\n/b\n");
    let r = tree.load_over(&previous);
    assert_eq!(r.settings, previous);
    assert_eq!(r.problems[0].kind, ProblemKind::Invalid);
}

#[test]
fn non_utf8_and_oversized_files_are_invalid() {
    let d = def("IDLELoop");
    let previous = previous_for(d);
    for content in [vec![0xff, 0xfe, b'5'], vec![b'5'; 5000], b"5\0".to_vec()] {
        let (_dir, tree) = tree();
        write(&tree, "IDLELoop.1", &content);
        let r = tree.load_over(&previous);
        assert_eq!(r.settings, previous);
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].kind, ProblemKind::Invalid);
    }
}

#[test]
fn a_directory_in_place_of_a_file_is_unreadable() {
    let (_dir, tree) = tree();
    let d = def("IDLELoop");
    fs::create_dir_all(tree.path_of(d)).expect("mkdir");
    let previous = previous_for(d);
    let r = tree.load_over(&previous);
    assert_eq!(r.settings, previous);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].kind, ProblemKind::Unreadable);
    assert_eq!(r.problems[0].path, tree.path_of(d));
}

#[test]
fn root_that_is_a_file_keeps_previous() {
    let (_dir, tree) = tree();
    fs::create_dir_all(tree.root().parent().expect("parent")).expect("mkdir");
    fs::write(tree.root(), "x").expect("write");
    let previous = previous_for(def("Workers"));
    let r = tree.load_over(&previous);
    assert_eq!(r.settings, previous);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].kind, ProblemKind::Unreadable);
    assert_eq!(r.problems[0].path, tree.root());
}

#[test]
fn missing_file_reverts_to_default_not_previous() {
    let (_dir, tree) = tree();
    tree.create_dirs().expect("create");
    let r = tree.load_over(&previous_for(def("AuthFailDelay")));
    assert_eq!(r.settings, Settings::default());
}

#[test]
fn unknown_files_are_reported_not_fatal() {
    let (_dir, tree) = tree();
    write(&tree, "IDLELoop.1", "10\n");
    write(&tree, "idleloop.1", "20\n");
    write(&tree, "Broadcast", "0\n");
    write(&tree, "Frobnicate.1", "1\n");
    write(&tree, ".hato-tmp.IDLELoop.1.1.0", "30\n");
    fs::create_dir_all(tree.root().join("sub")).expect("mkdir");
    let r = tree.load();
    assert_eq!(r.settings.idle_loop, Duration::from_secs(10));
    assert!(r.settings.broadcast);
    let unknown: Vec<(String, &str)> = r
        .problems
        .iter()
        .map(|p| {
            assert_eq!(p.kind, ProblemKind::Unknown);
            (
                p.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                p.reason.as_str(),
            )
        })
        .collect();
    let names: Vec<&str> = unknown.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Broadcast", "Frobnicate.1", "idleloop.1", "sub"]);
    assert!(unknown[0].1.contains("Broadcast.1"), "{}", unknown[0].1);
    assert!(unknown[2].1.contains("IDLELoop.1"), "{}", unknown[2].1);
}

#[test]
fn problem_display_is_path_colon_reason() {
    let p = Problem {
        path: "/x/IDLELoop.1".into(),
        kind: ProblemKind::Invalid,
        reason: "bad".into(),
    };
    assert_eq!(p.to_string(), "/x/IDLELoop.1: bad");
    assert_eq!(ProblemKind::Unknown.as_str(), "unknown");
}

// ---- set / get / list ----

#[test]
fn set_rejects_invalid_value_and_writes_nothing() {
    let (_dir, tree) = tree();
    for (name, value) in [
        ("IDLELoop", "abc"),
        ("IDLELoop", "0"),
        ("IDLECmd", "2"),
        ("IDLECmd", "-1"),
        ("Workers", "0x10"),
        ("MaxLiteralSize", "99999999999999999999999"),
        ("ImapListen", "localhost:143"),
        ("IDLETimeout", ""),
    ] {
        match tree.set(name, value) {
            Err(ConfigError::InvalidValue { name: n, .. }) => assert_eq!(n, format!("{name}.1")),
            other => panic!("{name}={value:?}: {other:?}"),
        }
    }
    assert!(
        !tree.root().exists(),
        "set created the tree for invalid values"
    );

    tree.set("IDLELoop", "7").expect("set");
    assert!(tree.set("IDLELoop", "1.5").is_err());
    assert_eq!(
        fs::read_to_string(tree.path_of(def("IDLELoop"))).expect("read"),
        "7\n"
    );
    assert_eq!(dir_names(tree.root()), ["IDLELoop.1"]);
}

#[test]
fn set_rejects_unknown_name() {
    let (_dir, tree) = tree();
    match tree.set("idleloop", "5") {
        Err(e @ ConfigError::UnknownSetting { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("IDLELoop.1"), "{msg}");
            if let ConfigError::UnknownSetting { suggestion, .. } = e {
                assert_eq!(suggestion.as_deref(), Some("IDLELoop.1"));
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        tree.set("Nope", "1"),
        Err(ConfigError::UnknownSetting {
            suggestion: None,
            ..
        })
    ));
    assert!(!tree.root().exists());
}

#[test]
fn set_writes_atomically_and_creates_tree() {
    let (_dir, tree) = tree();
    assert!(!tree.root().exists());
    tree.set("IDLETimeout", "  45 \r\n").expect("set");
    tree.set("ImapListen", "[::]:143").expect("set");
    tree.set("IDLETimeout", "50").expect("set again");
    let read = |f: &str| fs::read_to_string(tree.root().join(f)).expect("read");
    assert_eq!(read("IDLETimeout.1"), "50\n");
    assert_eq!(read("ImapListen.1"), "[::]:143\n");
    assert_eq!(dir_names(tree.root()), ["IDLETimeout.1", "ImapListen.1"]);
    let r = tree.load();
    assert!(r.problems.is_empty());
    assert_eq!(r.settings.idle_timeout, Duration::from_secs(50 * 60));
    assert_eq!(r.settings.imap_listen, "[::]:143".parse().expect("addr"));
}

#[test]
fn set_accepts_name_with_and_without_suffix() {
    let (_dir, tree) = tree();
    tree.set("NOOPPoll.1", "0").expect("with suffix");
    assert!(!tree.load().settings.noop_poll);
    tree.set("NOOPPoll", "1").expect("without suffix");
    assert!(tree.load().settings.noop_poll);
    assert_eq!(dir_names(tree.root()), ["NOOPPoll.1"]);
}

#[test]
fn reset_removes_the_file() {
    let (_dir, tree) = tree();
    tree.set("Broadcast", "0").expect("set");
    tree.reset("Broadcast.1").expect("reset");
    assert!(tree.load().settings.broadcast);
    tree.reset("Broadcast").expect("reset of a missing file");
    assert!(tree.reset("Nope").is_err());
}

#[test]
fn get_reports_value_and_source() {
    let (_dir, tree) = tree();
    let e = tree.get("IDLELoop").expect("get");
    assert_eq!(e.def.name, "IDLELoop");
    assert_eq!(e.value, "5");
    assert_eq!(e.source, Source::Default);
    assert_eq!(e.problem, None);

    tree.set("IDLELoop.1", "12").expect("set");
    let e = tree.get("IDLELoop.1").expect("get");
    assert_eq!(e.value, "12");
    assert_eq!(e.source, Source::File(tree.path_of(def("IDLELoop"))));
    assert_eq!(e.problem, None);

    write(&tree, "IDLELoop.1", " abc \n");
    let e = tree.get("IDLELoop").expect("get");
    assert_eq!(e.value, "abc");
    assert!(matches!(e.source, Source::File(_)));
    assert!(e.problem.is_some());

    assert_eq!(tree.get("PasswdFile").expect("get").value, "");
    assert!(matches!(
        tree.get("passwdfile"),
        Err(ConfigError::UnknownSetting { .. })
    ));
}

#[test]
fn list_gives_every_setting_in_order_and_unknowns() {
    let (_dir, tree) = tree();
    let (entries, unknown) = tree.list().expect("list of missing dir");
    assert_eq!(entries.len(), definitions().len());
    assert!(unknown.is_empty());
    assert!(entries.iter().all(|e| e.source == Source::Default));

    tree.set("Workers", "8").expect("set");
    write(&tree, "Stray.1", "1");
    let (entries, unknown) = tree.list().expect("list");
    let names: Vec<&str> = entries.iter().map(|e| e.def.name).collect();
    let table: Vec<&str> = definitions().iter().map(|d| d.name).collect();
    assert_eq!(names, table);
    let w = entries
        .iter()
        .find(|e| e.def.name == "Workers")
        .expect("Workers");
    assert_eq!(w.value, "8");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].kind, ProblemKind::Unknown);
    assert_eq!(unknown[0].path, tree.root().join("Stray.1"));
}

#[test]
fn temp_and_setting_file_names() {
    use std::ffi::OsStr;
    assert!(is_temp_file_name(OsStr::new(".hato-tmp.IDLELoop.1.5.0")));
    assert!(!is_temp_file_name(OsStr::new("IDLELoop.1")));
    assert_eq!(
        setting_for_file_name(OsStr::new("IDLELoop.1")).map(|d| d.name),
        Some("IDLELoop")
    );
    assert!(setting_for_file_name(OsStr::new("IDLELoop")).is_none());
    assert!(setting_for_file_name(OsStr::new("IDLELoop.1.1")).is_none());
}

// ---- shared snapshot ----

#[test]
fn shared_settings_store_and_load() {
    let shared = SharedSettings::new(Settings::default());
    let other = shared.clone();
    assert!(shared.load().idle_cmd);
    let before = shared.load_full();
    other.store(Settings {
        idle_cmd: false,
        ..Settings::default()
    });
    assert!(!shared.load().idle_cmd);
    // A snapshot taken before the swap is unaffected.
    assert!(before.idle_cmd);
}

#[test]
fn reload_applies_changes_and_keeps_previous_on_invalid() {
    let (_dir, tree) = tree();
    let shared = SharedSettings::default();
    tree.set("IDLELoop", "10").expect("set");
    let r = shared.reload(&tree);
    assert!(r.problems.is_empty());
    assert_eq!(r.changes.len(), 1);
    assert_eq!(r.changes[0].def.name, "IDLELoop");
    assert_eq!(shared.load().idle_loop, Duration::from_secs(10));

    write(&tree, "IDLELoop.1", "garbage");
    let r = shared.reload(&tree);
    assert_eq!(r.problems.len(), 1);
    assert!(r.changes.is_empty());
    assert_eq!(shared.load().idle_loop, Duration::from_secs(10));
    assert_eq!(r.settings.idle_loop, Duration::from_secs(10));
}

// ---- spool ----

#[test]
fn default_spool_precedence() {
    use std::ffi::OsString;
    let o = |s: &str| Some(OsString::from(s));
    assert_eq!(
        super::spool_from(o("/s"), o("/x"), o("/h")),
        Path::new("/s")
    );
    assert_eq!(
        super::spool_from(None, o("/x"), o("/h")),
        Path::new("/x/hato")
    );
    assert_eq!(
        super::spool_from(o(""), o("rel"), o("/h")),
        Path::new("/h/.local/share/hato")
    );
    assert_eq!(
        super::spool_from(None, None, None),
        Path::new("./hato-spool")
    );
    assert!(!default_spool().as_os_str().is_empty());
}

// ---- properties ----

proptest! {
    #[test]
    fn arbitrary_file_contents_never_panic(
        files in proptest::collection::vec(
            (0usize..14, proptest::collection::vec(any::<u8>(), 0..64)),
            0..8,
        ),
        text in "\\PC{0,24}",
    ) {
        let (_dir, tree) = tree();
        fs::create_dir_all(tree.root()).expect("mkdir");
        let defs = definitions();
        for (i, bytes) in &files {
            fs::write(tree.path_of(&defs[*i]), bytes).expect("write");
        }
        fs::write(tree.path_of(&defs[files.len() % defs.len()]), text.as_bytes()).expect("write");
        let previous = Settings {
            workers: 3,
            idle_cmd: false,
            ..Settings::default()
        };
        let r = tree.load_over(&previous);
        // Every setting whose file gave a problem kept the previous value.
        for p in &r.problems {
            prop_assert_ne!(p.kind, ProblemKind::Unknown);
            let d = p
                .path
                .file_name()
                .and_then(setting_for_file_name)
                .expect("problem on a known file");
            prop_assert_eq!(r.settings.value_text(d.id), previous.value_text(d.id));
        }
        let _ = tree.list().expect("list");
        for d in defs {
            let _ = tree.get(d.name).expect("get");
        }
    }

    #[test]
    fn in_range_numbers_round_trip(i in 0usize..14, pad_l in "[ \t\r\n]{0,3}", pad_r in "[ \t\r\n]{0,3}", x in any::<u64>()) {
        let d = &definitions()[i];
        prop_assume!(d.kind.is_numeric());
        let n = d.min + x % (d.max - d.min + 1);
        let mut s = Settings::default();
        prop_assert_eq!(s.apply(d, &format!("{pad_l}{n}{pad_r}")), Ok(()));
        prop_assert_eq!(s.value_text(d.id), n.to_string());
    }

    #[test]
    fn set_then_get_round_trips(i in 0usize..14, x in any::<u64>()) {
        let d = &definitions()[i];
        prop_assume!(d.kind.is_numeric());
        let n = d.min + x % (d.max - d.min + 1);
        let (_dir, tree) = tree();
        tree.set(d.name, &n.to_string()).expect("set");
        let e = tree.get(d.name).expect("get");
        prop_assert_eq!(e.value, n.to_string());
        prop_assert_eq!(e.problem, None);
    }
}
