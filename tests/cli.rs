//! The `hato user`, `hato reg` and first-start behaviour of `hato serve`, through the binary.

mod common;

use common::{Server, Spool, hato};

#[test]
fn user_add_passwd_del_list() {
    let spool = Spool::new();
    let list = spool.hato_ok(&["user", "list"]);
    assert_eq!(list, "alice\tARGON2ID\nbob\tSHA512-CRYPT\ncarol\tPLAIN\n");

    let dup = spool.hato(&["user", "add", "alice", "--password", "x"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    for bad in ["", "a:b", "a b", "../x", "a/b"] {
        let out = spool.hato(&["user", "add", bad, "--password", "x"]);
        assert!(!out.status.success(), "user name {bad:?} accepted");
    }

    spool.hato_ok(&[
        "user",
        "passwd",
        "carol",
        "--password",
        "new-pw",
        "--scheme",
        "sha512-crypt",
    ]);
    spool.hato_ok(&["user", "del", "bob"]);
    let list = spool.hato_ok(&["user", "list"]);
    assert_eq!(list, "alice\tARGON2ID\ncarol\tSHA512-CRYPT\n");
    assert!(!spool.hato(&["user", "del", "bob"]).status.success());

    let server = spool.start();
    let mut c = server.connect();
    assert!(
        c.run("a", "LOGIN carol carol-pw")
            .starts_with("a NO [AUTHENTICATIONFAILED]")
    );
    assert!(c.run("b", "LOGIN carol new-pw").starts_with("b OK"));
    let mut c = server.connect();
    assert!(
        c.run("c", "LOGIN bob \"bob pw \\\"quoted\\\"\"")
            .starts_with("c NO")
    );
    // Users added while the server runs can log in at once.
    spool.hato_ok(&[
        "user",
        "add",
        "dave",
        "--password",
        "dave-pw",
        "--scheme",
        "plain",
    ]);
    assert!(c.run("d", "LOGIN dave dave-pw").starts_with("d OK"));
}

#[test]
fn reg_set_validates_and_get_reads_back() {
    let spool = Spool::new();
    for (name, value) in [
        ("IDLECmd", "0"),
        ("IDLELoop.1", "10"),
        ("IDLETimeout", "45"),
        ("Broadcast", "0"),
        ("NOOPPoll", "0"),
    ] {
        spool.reg_set(name, value);
        assert_eq!(spool.hato_ok(&["reg", "get", name]).trim(), value);
    }
    let file = spool.path().join("reg/epost/ims/EPST5IMAP4S/IDLELoop.1");
    assert_eq!(std::fs::read_to_string(&file).expect("IDLELoop.1"), "10\n");

    for (name, bad) in [
        ("IDLELoop", "abc"),
        ("IDLELoop", "-1"),
        ("IDLELoop", ""),
        ("IDLELoop", "99999999999999999999999"),
        ("IDLECmd", "2"),
        ("IDLETimeout", "0"),
        ("ImapListen", "not-an-address"),
    ] {
        let out = spool.hato(&["reg", "set", name, bad]);
        assert!(!out.status.success(), "{name}={bad:?} accepted");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("IDLELoop.1"), "10\n");
    assert!(
        !spool
            .hato(&["reg", "set", "NoSuchSetting", "1"])
            .status
            .success()
    );

    let list = spool.hato_ok(&["reg", "list"]);
    for name in [
        "IDLECmd.1",
        "IDLELoop.1",
        "IDLETimeout.1",
        "Broadcast.1",
        "NOOPPoll.1",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
}

#[test]
fn reg_defaults_are_epost_defaults() {
    let spool = Spool::new();
    for (name, default) in [
        ("IDLECmd", "1"),
        ("IDLELoop", "5"),
        ("IDLETimeout", "30"),
        ("Broadcast", "1"),
        ("NOOPPoll", "1"),
    ] {
        assert_eq!(
            spool.hato_ok(&["reg", "get", name]).trim(),
            default,
            "{name}"
        );
    }
}

#[test]
fn invalid_reg_file_is_reported_and_the_default_kept() {
    let spool = Spool::new();
    let dir = spool.path().join("reg/epost/ims/EPST5IMAP4S");
    std::fs::write(dir.join("IDLECmd.1"), "abc\n").expect("write");
    let get = spool.hato(&["reg", "get", "IDLECmd"]);
    assert_eq!(get.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "1");
    // The server still starts, with IDLE on (the default).
    let server = spool.start();
    let mut c = server.connect();
    c.send(b"c CAPABILITY\r\n");
    let (untagged, _) = c.until_tagged("c");
    assert!(untagged[0].contains(" IDLE"), "{untagged:?}");
}

#[test]
fn first_start_creates_a_demo_user_that_can_log_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("fresh");
    let server = Server::start(&spool);
    let line = server
        .stdout
        .iter()
        .find(|l| l.contains("created user \"demo\""))
        .unwrap_or_else(|| panic!("no first-start line in {:?}", server.stdout));
    let password = line
        .split("with password \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("password in the first-start line");
    let mut c = server.connect();
    assert!(
        c.run("a", &format!("LOGIN demo {password}"))
            .starts_with("a OK")
    );
    assert!(spool.join("passwd").exists());
    assert!(spool.join("reg/epost/ims/EPST5IMAP4S").is_dir());
}

#[test]
fn serve_reports_a_bad_listen_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    // SO_REUSEPORT does not let us share a port with a socket that did not set it.
    let out = hato(&[
        "serve",
        "--spool",
        dir.path().to_str().expect("utf-8"),
        "--imap",
        &addr,
        "--metrics",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen for IMAP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
