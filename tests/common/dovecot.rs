//! Debian's Dovecot as a reference peer: installed if missing (when root), started on
//! 127.0.0.1 with a private configuration in a temporary directory, stopped by pid on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The one user of the reference server.
pub const USER: &str = "ref";
pub const PASSWORD: &str = "ref-pw";

/// A running Dovecot.
pub struct Dovecot {
    child: Child,
    pub imap: SocketAddr,
    /// The user's Maildir (INBOX).
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

fn dovecot_binary() -> Option<PathBuf> {
    ["/usr/sbin/dovecot", "/usr/bin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Finds Dovecot, installing Debian's package when missing. Panics when it cannot be had, so
/// a test that needs it never passes silently.
fn ensure_dovecot() -> PathBuf {
    if let Some(p) = dovecot_binary() {
        return p;
    }
    let _ = Command::new("apt-get").arg("update").status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "dovecot-imapd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    dovecot_binary()
        .expect("Dovecot is needed and could not be installed (apt-get install dovecot-imapd)")
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with(|_| {})
    }

    /// Starts Dovecot after `fill` has put messages into the user's Maildir (INBOX).
    pub fn start_with(fill: impl FnOnce(&Path)) -> Dovecot {
        let binary = ensure_dovecot();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Dovecot drops privileges to the mail user; the tree must be reachable for it.
        let _ = Command::new("chmod").args(["755"]).arg(d).status();
        let home = d.join("home");
        let maildir = home.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        fill(&maildir);
        let _ = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&home)
            .status();
        std::fs::write(d.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).expect("passwd");
        let port = super::free_port();
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nfirst_valid_uid = 1\n\
             mail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={h}\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
             \x20 inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
            d = d.display(),
            h = home.display(),
        );
        let conf_path = d.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("dovecot.conf");
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .spawn()
            .expect("start dovecot");
        let imap: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(imap).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot did not start; see {}",
                d.join("dovecot.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot {
            child,
            imap,
            maildir,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
