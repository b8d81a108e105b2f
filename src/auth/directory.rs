//! The running server's view of the passwd-file: parsed once, re-read when the file changes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs;
use std::hint::black_box;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::passwd_file::{Line, read_document};
use super::scheme::{Credential, Kind, MAX_PASSWORD_LEN};
use super::{AuthError, PasswdFile};

/// What the running server asks at login.
///
/// `Send + Sync`; share it between worker threads in an `Arc`. Each [`verify`](Self::verify)
/// does one `stat()` of the passwd-file and re-reads it when it was replaced or modified
/// (device, inode, size, mtime or ctime changed), so `hato user add` takes effect without a
/// restart. A missing file means nobody can log in.
pub struct UserDirectory {
    file: PasswdFile,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Serialises reloads so a change is parsed once, not once per waiting thread.
    reload: Mutex<()>,
}

/// Identity and version of the file as seen by `stat()`; `None` in [`Snapshot`] = no file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Self {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// One parsed version of the file.
struct Snapshot {
    stamp: Option<Stamp>,
    /// User name -> credential; `None` when the user exists but cannot log in (empty password,
    /// unknown scheme, malformed hash). The first line for a name wins, as in Dovecot.
    users: HashMap<String, Option<Credential>>,
    /// Checked instead when there is no usable credential, to keep the timing alike.
    dummy: Credential,
}

impl Snapshot {
    fn empty(stamp: Option<Stamp>) -> Self {
        Snapshot {
            stamp,
            users: HashMap::new(),
            dummy: Credential::dummy_like(None),
        }
    }

    /// Parses the file, logging (once per load) every line that cannot be used.
    fn load(file: &PasswdFile, stamp: Option<Stamp>) -> Result<Self, AuthError> {
        let path = file.path();
        if stamp.is_none() {
            tracing::warn!(path = %path.display(), "passwd-file does not exist; nobody can log in");
            return Ok(Snapshot::empty(None));
        }
        let Some(doc) = read_document(path)? else {
            // Removed between stat() and read; the next stat() sees it is gone.
            return Ok(Snapshot::empty(stamp));
        };
        let mut users = HashMap::new();
        let mut kinds: HashMap<Kind, (usize, Credential)> = HashMap::new();
        for (line_no, line) in doc.classified() {
            let user = match line {
                Line::Comment => continue,
                Line::InvalidName(name) => {
                    tracing::warn!(
                        path = %path.display(), line = line_no, name,
                        "invalid user name; line ignored"
                    );
                    continue;
                }
                Line::User(user) => user,
            };
            let credential = if user.password.is_empty() {
                tracing::warn!(
                    path = %path.display(), line = line_no, user = user.name,
                    "empty password field; user cannot log in"
                );
                None
            } else {
                match Credential::parse(user.password) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(
                            path = %path.display(), line = line_no, user = user.name, error = %e,
                            "user cannot log in"
                        );
                        None
                    }
                }
            };
            match users.entry(user.name.to_owned()) {
                Entry::Occupied(_) => {
                    tracing::warn!(
                        path = %path.display(), line = line_no, user = user.name,
                        "duplicate user; the first line wins"
                    );
                }
                Entry::Vacant(slot) => {
                    if let Some(c) = &credential {
                        kinds.entry(c.kind()).or_insert_with(|| (0, c.clone())).0 += 1;
                    }
                    slot.insert(credential);
                }
            }
        }
        // Unknown users cost what the most common kind of stored password costs.
        let template = kinds
            .into_values()
            .max_by_key(|(count, _)| *count)
            .map(|(_, c)| c);
        let dummy = Credential::dummy_like(template.as_ref());
        tracing::info!(path = %path.display(), users = users.len(), "passwd-file loaded");
        Ok(Snapshot {
            stamp,
            users,
            dummy,
        })
    }
}

impl UserDirectory {
    /// Does not touch the disk; the file is read on first use.
    #[must_use]
    pub fn new(file: PasswdFile) -> Self {
        UserDirectory {
            file,
            current: RwLock::new(None),
            reload: Mutex::new(()),
        }
    }

    #[must_use]
    pub fn file(&self) -> &PasswdFile {
        &self.file
    }

    /// Blocking (argon2 costs tens of ms): the server calls this from a blocking thread pool.
    ///
    /// `Ok(canonical user name)` when the password matches; `Err(AuthError::InvalidCredentials)`
    /// for an unknown user, a user who cannot log in, or a wrong password (same error, and
    /// about the same time, for all). Empty passwords and passwords longer than
    /// [`MAX_PASSWORD_LEN`] never match. Other errors (`Io`) mean the file could not be read.
    pub fn verify(&self, user: &str, password: &[u8]) -> Result<String, AuthError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let snapshot = self.snapshot()?;
        match snapshot.users.get_key_value(user) {
            Some((name, Some(credential))) => match credential.verify(password) {
                Ok(true) => return Ok(name.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        user = name.as_str(), error = %e,
                        "stored password could not be checked"
                    );
                }
            },
            _ => {
                // Unknown user, or one without a usable password: spend the same effort.
                let _ = black_box(snapshot.dummy.verify(black_box(password)));
            }
        }
        Err(AuthError::InvalidCredentials)
    }

    /// Loads the file if needed and returns how many users it has (including those who cannot
    /// log in). Useful at startup to report problems early.
    pub fn user_count(&self) -> Result<usize, AuthError> {
        Ok(self.snapshot()?.users.len())
    }

    /// The parsed file, re-read if `stat()` says it changed.
    fn snapshot(&self) -> Result<Arc<Snapshot>, AuthError> {
        let path = self.file.path();
        let stamp = match fs::metadata(path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuthError::io(path, e)),
        };
        if let Some(current) = self.cached(stamp) {
            return Ok(current);
        }
        let _reloading = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have loaded this version while we waited.
        if let Some(current) = self.cached(stamp) {
            return Ok(current);
        }
        let fresh = Arc::new(Snapshot::load(&self.file, stamp)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn cached(&self, stamp: Option<Stamp>) -> Option<Arc<Snapshot>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|s| s.stamp == stamp)
            .map(Arc::clone)
    }
}

impl fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserDirectory")
            .field("path", &self.file.path())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scheme, hash_password};
    use std::path::Path;
    use std::time::Duration;

    const BOB_SHA512: &str = "{SHA512-CRYPT}$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1";

    fn setup(content: &str) -> (tempfile::TempDir, UserDirectory) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        fs::write(&path, content).expect("write");
        (dir, UserDirectory::new(PasswdFile::new(path)))
    }

    fn is_invalid(r: Result<String, AuthError>) -> bool {
        matches!(r, Err(AuthError::InvalidCredentials))
    }

    /// Replaces the file the way an editor or another tool might (new inode via rename).
    fn replace(path: &Path, content: &str) {
        let tmp = path.with_extension("new");
        fs::write(&tmp, content).expect("write");
        fs::rename(&tmp, path).expect("rename");
    }

    #[test]
    fn user_directory_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<UserDirectory>();
        check::<Arc<UserDirectory>>();
    }

    #[test]
    fn verify_right_wrong_and_unknown() {
        let content =
            format!("# users\nalice:{{PLAIN}}alicepw:1000:1000::/home/alice::\nbob:{BOB_SHA512}\n");
        let (_dir, users) = setup(&content);
        assert_eq!(users.verify("alice", b"alicepw").expect("alice"), "alice");
        assert_eq!(users.verify("bob", b"secret").expect("bob"), "bob");
        // Wrong password and unknown user: the very same error.
        assert!(is_invalid(users.verify("alice", b"wrong")));
        assert!(is_invalid(users.verify("bob", b"wrong")));
        assert!(is_invalid(users.verify("nobody", b"alicepw")));
        assert!(is_invalid(users.verify("", b"x")));
        assert_eq!(
            users.verify("alice", b"wrong").map_err(|e| e.to_string()),
            users.verify("nobody", b"wrong").map_err(|e| e.to_string())
        );
        // Exact, case-sensitive user names.
        assert!(is_invalid(users.verify("Alice", b"alicepw")));
        assert!(is_invalid(users.verify("alice ", b"alicepw")));
        // Empty and over-long passwords never match.
        assert!(is_invalid(users.verify("alice", b"")));
        assert!(is_invalid(
            users.verify("alice", &[b'a'; MAX_PASSWORD_LEN + 1])
        ));
        assert_eq!(users.user_count().expect("count"), 2);
    }

    #[test]
    fn verify_argon2_user() {
        let field = hash_password(Scheme::Argon2id, "s3cret").expect("hash");
        let (_dir, users) = setup(&format!("carol:{field}\n"));
        assert_eq!(users.verify("carol", b"s3cret").expect("carol"), "carol");
        assert!(is_invalid(users.verify("carol", b"s3cre")));
    }

    #[test]
    fn unknown_scheme_line_does_not_break_other_users() {
        let content = format!(
            "alice:{{MD5-CRYPT}}$1$abc$def:1000\n\
             broken:{{ARGON2ID}}not-a-phc-string\n\
             empty::1000:1000\n\
             bad name:{{PLAIN}}x\n\
             bob:{BOB_SHA512}\n\
             carol:{{PLAIN}}carolpw\n"
        );
        let (_dir, users) = setup(&content);
        assert_eq!(users.verify("bob", b"secret").expect("bob"), "bob");
        assert_eq!(users.verify("carol", b"carolpw").expect("carol"), "carol");
        for user in ["alice", "broken", "empty", "bad name", "bad"] {
            assert!(is_invalid(users.verify(user, b"x")), "{user}");
        }
        assert!(is_invalid(users.verify("alice", b"$1$abc$def")));
        assert_eq!(users.user_count().expect("count"), 5);
    }

    #[test]
    fn first_duplicate_wins() {
        let (_dir, users) = setup("dup:{PLAIN}one\ndup:{PLAIN}two\n");
        assert_eq!(users.verify("dup", b"one").expect("first"), "dup");
        assert!(is_invalid(users.verify("dup", b"two")));
    }

    #[test]
    fn reloads_after_file_changes() {
        let (_dir, users) = setup("alice:{PLAIN}alicepw\n");
        let file = users.file().clone();
        assert!(is_invalid(users.verify("dave", b"davepw")));

        // Through the CLI path (atomic rename).
        file.add_user("dave", "davepw", Scheme::Plain).expect("add");
        assert_eq!(users.verify("dave", b"davepw").expect("dave"), "dave");

        // Password change with a same-length password: size unchanged, new inode.
        file.set_password("alice", "ALICEPW", Scheme::Plain)
            .expect("set");
        assert!(is_invalid(users.verify("alice", b"alicepw")));
        assert_eq!(users.verify("alice", b"ALICEPW").expect("alice"), "alice");

        // Rewritten in place (same inode, same size): mtime/ctime change.
        let before = fs::read_to_string(file.path()).expect("read");
        let after = before.replace("ALICEPW", "alicepw");
        assert_eq!(before.len(), after.len());
        // Make sure the timestamps can differ even on coarse-grained filesystems.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(file.path(), &after).expect("rewrite");
        assert_eq!(users.verify("alice", b"alicepw").expect("alice"), "alice");

        file.delete_user("dave").expect("delete");
        assert!(is_invalid(users.verify("dave", b"davepw")));

        // Replaced by another tool.
        replace(file.path(), "erin:{PLAIN}erinpw\n");
        assert_eq!(users.verify("erin", b"erinpw").expect("erin"), "erin");
        assert!(is_invalid(users.verify("alice", b"alicepw")));
    }

    #[test]
    fn missing_file_means_nobody_then_file_appears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PasswdFile::new(dir.path().join("users"));
        let users = UserDirectory::new(file.clone());
        assert!(is_invalid(users.verify("alice", b"pw")));
        assert_eq!(users.user_count().expect("count"), 0);
        file.add_user("alice", "pw", Scheme::Plain).expect("add");
        assert_eq!(users.verify("alice", b"pw").expect("alice"), "alice");
        fs::remove_file(file.path()).expect("remove");
        assert!(is_invalid(users.verify("alice", b"pw")));
    }

    #[test]
    fn unreadable_file_is_an_io_error_not_invalid_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: stat() works, read() fails.
        let path = dir.path().join("users");
        fs::create_dir(&path).expect("mkdir");
        let users = UserDirectory::new(PasswdFile::new(path));
        assert!(matches!(
            users.verify("alice", b"pw"),
            Err(AuthError::Io { .. })
        ));
    }

    #[test]
    fn concurrent_verifies_share_one_directory() {
        let (_dir, users) = setup("alice:{PLAIN}a\nbob:{PLAIN}b\n");
        let users = Arc::new(users);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let users = Arc::clone(&users);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let (user, pw) = if i % 2 == 0 {
                            ("alice", b"a")
                        } else {
                            ("bob", b"b")
                        };
                        assert_eq!(users.verify(user, pw).expect("ok"), user);
                        assert!(is_invalid(users.verify(user, b"x")));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
    }
}
