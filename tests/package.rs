//! The Debian package and its systemd unit.
//!
//! * `packaging/hato.service` passes `systemd-analyze verify` without a word, keeps the
//!   directives operators rely on, lets the workers use io_uring (no `SystemCallFilter` line
//!   denies `io_uring_setup`/`io_uring_enter`/`io_uring_register`), and scores at most "OK" in
//!   `systemd-analyze security --offline=yes`.
//! * `cargo deb` builds the .deb; its file list, control fields and maintainer scripts are
//!   checked, the extracted `usr/bin/hato` runs, and `dpkg --root` installs it into a scratch
//!   root (scripts run chrootless with `$DPKG_ROOT`), whose postinst makes the hato user and a
//!   spool that a server then starts on without creating the first-start demo user.
//!
//! The .deb is built with `cargo deb --no-build` from the binary this test suite already built
//! (the debug profile, copied into a scratch target directory), stripped and fast-compressed:
//! the release build (thin LTO) takes many minutes on two cores, and xz on an unstripped debug
//! binary over two minutes. cargo-deb is installed with `cargo install` when missing (about
//! four minutes on two cores, once per machine).

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{BIN, Server, ensure_command};

/// The unit, relative to the crate.
const UNIT: &str = "packaging/hato.service";
/// The cargo-deb this test installs when none is there (its flags are used below).
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The syscalls the workers' rings need.
const IO_URING: [&str; 3] = ["io_uring_setup", "io_uring_enter", "io_uring_register"];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, asserts it succeeded, returns its output.
fn run_ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The `Key=value` lines of a unit file, in order (comments and section headers skipped).
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            Some((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn values<'a>(directives: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    directives
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The unit with `ExecStart` pointing at the binary this suite built, so that `verify` can
/// check the command exists (`/usr/bin/hato` is not installed here).
fn unit_for_this_machine(dir: &Path) -> PathBuf {
    let unit = fs::read_to_string(crate_dir().join(UNIT)).expect("read the unit");
    assert!(unit.contains("\nExecStart=/usr/bin/hato "), "{unit}");
    let rewritten = unit.replace("\nExecStart=/usr/bin/hato ", &format!("\nExecStart={BIN} "));
    let path = dir.join("hato.service");
    fs::write(&path, rewritten).expect("write the unit");
    path
}

/// Every syscall in a `systemd-analyze syscall-filter` group, nested groups included.
fn syscalls_of(group: &str, seen: &mut BTreeSet<String>) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    if !seen.insert(group.to_string()) {
        return calls;
    }
    let out = run_ok(Command::new("systemd-analyze").args(["syscall-filter", group]));
    for line in text(&out.stdout).lines() {
        // Members are indented; the header and comments are not members.
        if !line.starts_with(char::is_whitespace) {
            continue;
        }
        let member = line.trim();
        if member.is_empty() || member.starts_with('#') {
            continue;
        }
        if member.starts_with('@') {
            calls.extend(syscalls_of(member, seen));
        } else {
            calls.insert(member.to_string());
        }
    }
    calls
}

/// Expands the names in one `SystemCallFilter=` value (after any `~`).
fn expand_filter(value: &str) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    for name in value.split_whitespace() {
        let name = name.split(':').next().unwrap_or(name);
        if name.starts_with('@') {
            calls.extend(syscalls_of(name, &mut BTreeSet::new()));
        } else {
            calls.insert(name.to_string());
        }
    }
    calls
}

#[test]
fn unit_verifies_and_keeps_its_promises() {
    ensure_command("systemd-analyze", "systemd");
    let unit = fs::read_to_string(crate_dir().join(UNIT)).expect("read the unit");
    let d = directives(&unit);

    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", "/usr/bin/hato serve --spool /var/spool/hato"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("User", "hato"),
        ("Group", "hato"),
        ("LimitNOFILE", "1048576"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/spool/hato"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(values(&d, key), [value], "{key}= in {UNIT}");
    }

    // The stop timeout leaves room for the graceful shutdown (BYE to every session within
    // ShutdownGrace.1): read its default from hato itself.
    let spool = tempfile::tempdir().expect("tempdir");
    let spool_arg = spool.path().to_str().expect("utf-8 temp path");
    let grace: u64 = common::hato_ok(&["reg", "get", "ShutdownGrace", "--spool", spool_arg])
        .trim()
        .parse()
        .expect("ShutdownGrace is a number");
    let stop: u64 = values(&d, "TimeoutStopSec")
        .first()
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec= in seconds");
    assert!(
        stop > grace,
        "TimeoutStopSec={stop} must exceed ShutdownGrace.1={grace}"
    );

    // io_uring stays usable under every SystemCallFilter line.
    for value in values(&d, "SystemCallFilter") {
        if let Some(denied) = value.strip_prefix('~') {
            let calls = expand_filter(denied);
            for call in IO_URING {
                assert!(
                    !calls.contains(call),
                    "SystemCallFilter={value} denies {call}"
                );
            }
        } else {
            let calls = expand_filter(value);
            for call in IO_URING {
                assert!(
                    calls.contains(call),
                    "SystemCallFilter={value} lacks {call}"
                );
            }
        }
    }

    // `verify` prints nothing at all for a clean unit: no warning is tolerated.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = unit_for_this_machine(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{said}",
        path.display(),
        out.status
    );

    // The sandbox's score: systemd rates 0 (locked down) to 10 (exposed); "OK" is below 5.
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path),
    );
    let report = text(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for hato.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure < 5.0, "exposure {exposure}:\n{report}");
}

/// Makes sure `cargo deb` works, installing cargo-deb when it is missing.
fn ensure_cargo_deb() {
    let present = || {
        Command::new(cargo())
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return;
    }
    let started = Instant::now();
    let out = Command::new(cargo())
        .args(["install", "cargo-deb", "--locked", "--version"])
        .arg(CARGO_DEB_VERSION)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run cargo install");
    eprintln!("cargo install cargo-deb: {:.0?}", started.elapsed());
    assert!(
        out.status.success() && present(),
        "cargo install cargo-deb failed:\n{}",
        text(&out.stderr)
    );
}

/// The files a package must hold (as `dpkg-deb --contents` lists them, without the `./`).
const PACKAGED: [&str; 10] = [
    "usr/bin/hato",
    "lib/systemd/system/hato.service",
    "usr/lib/sysusers.d/hato.conf",
    "usr/lib/tmpfiles.d/hato.conf",
    "usr/share/doc/hato/README.md",
    "usr/share/doc/hato/copyright",
    "usr/share/hato/grafana/hato.json",
    "usr/share/hato/grafana/alerts.yml",
    "usr/share/hato/grafana/prometheus.yml",
    "usr/share/hato/grafana/README.md",
];

/// The files under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in fs::read_dir(&next).unwrap_or_else(|e| panic!("{}: {e}", next.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    files
}

#[test]
fn deb_builds_installs_and_runs() {
    ensure_command("dpkg-deb", "dpkg");
    // `depends = "$auto"` is resolved by dpkg-shlibdeps; `--strip` runs binutils' strip.
    ensure_command("dpkg-shlibdeps", "dpkg-dev");
    ensure_command("strip", "binutils");
    ensure_command("systemd-sysusers", "systemd");
    ensure_cargo_deb();

    let scratch = tempfile::tempdir().expect("tempdir");
    // cargo-deb takes `target/release/hato` from $CARGO_TARGET_DIR/release/: this suite's
    // binary, so that nothing is rebuilt and the crate's own target/ is not touched.
    let target = scratch.path().join("target");
    fs::create_dir_all(target.join("release")).expect("mkdir");
    fs::copy(BIN, target.join("release/hato")).expect("copy the binary");
    let out_dir = scratch.path().join("deb");
    let started = Instant::now();
    let out = run_ok(
        Command::new(cargo())
            .args(["deb", "--no-build", "--strip", "--fast", "--manifest-path"])
            .arg(crate_dir().join("Cargo.toml"))
            .arg("--output")
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(crate_dir()),
    );
    eprintln!("cargo deb --no-build: {:.1?}", started.elapsed());
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !said.to_lowercase().contains("warning"),
        "cargo deb warned:\n{said}"
    );
    let deb = fs::read_dir(&out_dir)
        .expect("output dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}:\n{said}", out_dir.display()));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("hato_{version}-1_"))),
        "{}",
        deb.display()
    );

    // The file list.
    let listing = text(&run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb)).stdout);
    let paths: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?;
            Some((mode, l.split_whitespace().last()?.trim_start_matches("./")))
        })
        .collect();
    // Grafana's provisioning files, wherever the crate has them.
    let provisioning = files_under(&crate_dir().join("grafana/provisioning"));
    assert!(!provisioning.is_empty(), "no grafana/provisioning files");
    let provisioned = provisioning.iter().map(|p| {
        Path::new("usr/share/hato/grafana/provisioning")
            .join(p)
            .to_string_lossy()
            .into_owned()
    });
    for want in PACKAGED.map(String::from).into_iter().chain(provisioned) {
        assert!(
            paths.iter().any(|(_, p)| *p == want),
            "{want} missing from the package:\n{listing}"
        );
    }
    for (mode, path) in &paths {
        let expected = match *path {
            "usr/bin/hato" => "-rwxr-xr-x",
            p if p.ends_with('/') => "drwxr-xr-x",
            _ => "-rw-r--r--",
        };
        assert_eq!(*mode, expected, "mode of {path}");
    }

    // The control fields and the maintainer scripts.
    let info = text(&run_ok(Command::new("dpkg-deb").arg("--info").arg(&deb)).stdout);
    for field in [
        "Package: hato",
        &format!("Version: {version}-1"),
        "Section: mail",
        "Priority: optional",
        "Depends: libc6",
        "Maintainer: ",
    ] {
        assert!(info.contains(field), "{field} missing:\n{info}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(
            info.contains(&format!(" {script} ")),
            "no {script}:\n{info}"
        );
    }

    // The extracted files: the unit as written, and a binary that runs.
    let extracted = scratch.path().join("extracted");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted));
    assert_eq!(
        fs::read(extracted.join("lib/systemd/system/hato.service")).expect("packaged unit"),
        fs::read(crate_dir().join(UNIT)).expect("unit"),
        "the packaged unit is packaging/hato.service"
    );
    let hato = extracted.join("usr/bin/hato");
    let out = run_ok(Command::new(&hato).arg("--version"));
    assert_eq!(text(&out.stdout).trim(), format!("hato {version}"));
    let help = text(&run_ok(Command::new(&hato).arg("--help")).stdout);
    for command in ["serve", "user", "reg", "deliver"] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }

    // dpkg installs it into a scratch root; the maintainer scripts run outside a chroot with
    // $DPKG_ROOT, and must touch nothing else.
    let host_had_hato = fs::read_to_string("/etc/passwd")
        .expect("/etc/passwd")
        .lines()
        .any(|l| l.starts_with("hato:"));
    let root = scratch.path().join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        fs::write(root.join(file), "").expect("dpkg database");
    }
    let out = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            // Not a real system: no libc6 package is registered there, and no chroot.
            .args(["--force-script-chrootless", "--force-depends", "--install"])
            .arg(&deb),
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(root.join("usr/bin/hato").is_file(), "{said}");
    let user = fs::read_to_string(root.join("etc/passwd"))
        .expect("etc/passwd in the root")
        .lines()
        .find(|l| l.starts_with("hato:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("postinst made no hato user:\n{said}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5], "/var/spool/hato", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    let uid: u32 = fields[2].parse().expect("uid");
    let gid: u32 = fields[3].parse().expect("gid");
    assert!(
        fs::read_to_string(root.join("etc/group"))
            .expect("etc/group in the root")
            .lines()
            .any(|l| l.starts_with(&format!("hato:x:{gid}:"))),
        "no hato group with gid {gid}"
    );
    let spool = root.join("var/spool/hato");
    let meta = fs::metadata(&spool).expect("postinst made the spool");
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "spool owner");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "spool mode");
    let passwd = fs::metadata(spool.join("passwd")).expect("an empty passwd-file");
    assert_eq!(
        (
            passwd.len(),
            passwd.uid(),
            passwd.permissions().mode() & 0o777
        ),
        (0, uid, 0o600),
        "passwd-file"
    );
    assert_eq!(
        fs::read_to_string("/etc/passwd")
            .expect("/etc/passwd")
            .lines()
            .any(|l| l.starts_with("hato:")),
        host_had_hato,
        "the maintainer scripts changed this machine's /etc/passwd"
    );

    // Configuring again (as on an upgrade) changes nothing and fails nothing.
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--install"])
            .arg(&deb),
    );
    assert_eq!(fs::metadata(spool.join("passwd")).expect("passwd").len(), 0);

    // A server on that spool starts without creating the first-start demo user.
    let server = Server::start_with(&spool, &["--lmtp", "127.0.0.1:0"]);
    assert!(
        !server.stdout.iter().any(|l| l.contains("first start")),
        "{:?}",
        server.stdout
    );
    drop(server);
    assert_eq!(
        fs::read_to_string(spool.join("passwd")).expect("passwd"),
        "",
        "the server added a user"
    );
}
