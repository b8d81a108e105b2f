//! The passwd-file on disk: parsing its lines and rewriting it atomically.
//!
//! Format (Dovecot): `user:password:uid:gid:gecos:home:shell:extra_fields`, one user per line.
//! Only the first two fields are interpreted; whatever follows the password field is kept
//! byte for byte when a line is rewritten. Blank lines, `#` comments and lines whose user name
//! is invalid are kept as they are and otherwise ignored.
//!
//! Rewrites take a `<file>.lock` lock file (created with `O_EXCL`), write a temporary file in the
//! same directory, fsync it, rename it over the original and fsync the directory, so readers
//! (the running server) always see either the old or the new file. An existing file keeps its
//! mode and, when we are allowed to, its owner; a new file gets mode 0600.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::scheme::{hash_password, scheme_label};
use super::{AuthError, Scheme, validate_user_name};

/// How long a rewrite waits for another process's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// A lock file older than this is left over from a crashed process and is removed.
const LOCK_STALE: Duration = Duration::from_secs(60);
const LOCK_POLL: Duration = Duration::from_millis(25);

/// One user as listed by [`PasswdFile::list_users`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// The scheme as written between the braces (e.g. `ARGON2ID`, `plain`); `CRYPT` for a
    /// password without braces (Dovecot's default scheme), empty for an empty password field.
    pub scheme: String,
}

/// One user's extra fields, `(key, value)` in line order.
pub type ExtraFields = Vec<(String, String)>;

/// The passwd-file on disk: reads and atomically rewrites it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdFile {
    path: PathBuf,
}

impl PasswdFile {
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PasswdFile { path: path.into() }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[must_use]
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// Adds a user. `Err(UserExists)` if the name is already in the file (whatever its password
    /// scheme). Creates the file (mode 0600) and its parent directories (mode 0700) if missing.
    pub fn add_user(&self, name: &str, password: &str, scheme: Scheme) -> Result<(), AuthError> {
        validate_user_name(name)?;
        let field = hash_password(scheme, password)?;
        let target = self.target()?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AuthError::io(dir, e))?;
        }
        let _lock = Lock::acquire(&target)?;
        let mut doc = read_document(&target)?.unwrap_or_default();
        if doc.users().any(|u| u.name == name) {
            return Err(AuthError::UserExists(name.to_owned()));
        }
        doc.lines.push(format!("{name}:{field}"));
        write_atomically(&target, &doc)?;
        tracing::info!(user = name, scheme = %scheme, path = %target.display(), "user added");
        Ok(())
    }

    /// Replaces a user's password, keeping the rest of the line. `Err(NoSuchUser)` if absent.
    /// (Should the name appear on several lines, all of them are updated.)
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        scheme: Scheme,
    ) -> Result<(), AuthError> {
        validate_user_name(name)?;
        let field = hash_password(scheme, password)?;
        let target = self.target()?;
        let _lock = self.lock_existing(&target, name)?;
        let mut doc =
            read_document(&target)?.ok_or_else(|| AuthError::NoSuchUser(name.to_owned()))?;
        let mut found = false;
        for line in &mut doc.lines {
            let replacement = match Line::classify(line) {
                Line::User(user) if user.name == name => Some(user.with_password(&field)),
                _ => None,
            };
            if let Some(replacement) = replacement {
                *line = replacement;
                found = true;
            }
        }
        if !found {
            return Err(AuthError::NoSuchUser(name.to_owned()));
        }
        write_atomically(&target, &doc)?;
        tracing::info!(user = name, scheme = %scheme, path = %target.display(), "password changed");
        Ok(())
    }

    /// Removes every line for this user. `Err(NoSuchUser)` if absent.
    pub fn delete_user(&self, name: &str) -> Result<(), AuthError> {
        validate_user_name(name)?;
        let target = self.target()?;
        let _lock = self.lock_existing(&target, name)?;
        let mut doc =
            read_document(&target)?.ok_or_else(|| AuthError::NoSuchUser(name.to_owned()))?;
        let before = doc.lines.len();
        doc.lines
            .retain(|line| !matches!(Line::classify(line), Line::User(u) if u.name == name));
        if doc.lines.len() == before {
            return Err(AuthError::NoSuchUser(name.to_owned()));
        }
        write_atomically(&target, &doc)?;
        tracing::info!(user = name, path = %target.display(), "user deleted");
        Ok(())
    }

    /// The users in file order (lines with an invalid user name are skipped). A missing file is
    /// an `Io` error with kind `NotFound`.
    pub fn list_users(&self) -> Result<Vec<UserInfo>, AuthError> {
        let doc = read_document(&self.path)?
            .ok_or_else(|| AuthError::io(&self.path, io::Error::from(io::ErrorKind::NotFound)))?;
        Ok(doc
            .users()
            .map(|u| UserInfo {
                name: u.name.to_owned(),
                scheme: scheme_label(u.password),
            })
            .collect())
    }

    /// Each user's extra fields (the eighth field, `key=value` words separated by spaces; a
    /// word without `=` has an empty value), in file order, users without any left out. The
    /// first line of a name wins, as at login. A missing file is an `Io` error with kind
    /// `NotFound`.
    pub fn extra_fields(&self) -> Result<Vec<(String, ExtraFields)>, AuthError> {
        let doc = read_document(&self.path)?
            .ok_or_else(|| AuthError::io(&self.path, io::Error::from(io::ErrorKind::NotFound)))?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for user in doc.users() {
            if !seen.insert(user.name) {
                continue;
            }
            let fields = user.extra_fields();
            if !fields.is_empty() {
                out.push((user.name.to_owned(), fields));
            }
        }
        Ok(out)
    }

    /// The file to rewrite: the configured path, or what it points to if it is a symlink (so
    /// the rename does not replace the link with a regular file).
    fn target(&self) -> Result<PathBuf, AuthError> {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(&self.path).map_err(|e| AuthError::io(&self.path, e))
            }
            _ => Ok(self.path.clone()),
        }
    }

    /// The lock for modifying an existing file; `NoSuchUser` if there is no file.
    fn lock_existing(&self, target: &Path, name: &str) -> Result<Lock, AuthError> {
        if !target.is_file() {
            return Err(AuthError::NoSuchUser(name.to_owned()));
        }
        Lock::acquire(target)
    }
}

/// The file's lines, without their `\n`.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub(crate) lines: Vec<String>,
}

impl Document {
    pub(crate) fn parse(text: &str) -> Self {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n').map(str::to_owned).collect()
        };
        Document { lines }
    }

    /// Every line followed by `\n` (a missing final newline is added).
    fn serialize(&self) -> String {
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The user lines, in order.
    pub(crate) fn users(&self) -> impl Iterator<Item = UserLine<'_>> {
        self.lines.iter().filter_map(|l| match Line::classify(l) {
            Line::User(u) => Some(u),
            _ => None,
        })
    }

    /// Every line with its 1-based number, classified.
    pub(crate) fn classified(&self) -> impl Iterator<Item = (usize, Line<'_>)> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, Line::classify(l)))
    }
}

/// What one line of the file is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Blank or `#` comment.
    Comment,
    /// Looks like a user line, but the name is not a valid user name.
    InvalidName(&'a str),
    User(UserLine<'a>),
}

/// A user line, split up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UserLine<'a> {
    pub(crate) name: &'a str,
    /// The whole `{SCHEME}data` field (may be empty).
    pub(crate) password: &'a str,
    /// Everything after the password field, starting with its `:` (may be empty).
    rest: &'a str,
    /// A trailing `\r` (CRLF file), kept on rewrite.
    cr: &'a str,
}

impl<'a> Line<'a> {
    pub(crate) fn classify(line: &'a str) -> Self {
        let (body, cr) = match line.strip_suffix('\r') {
            Some(body) => (body, "\r"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Line::Comment;
        }
        let (name, after) = body.split_once(':').unwrap_or((body, ""));
        if validate_user_name(name).is_err() {
            return Line::InvalidName(name);
        }
        let (password, rest) = match after.find(':') {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        Line::User(UserLine {
            name,
            password,
            rest,
            cr,
        })
    }
}

impl UserLine<'_> {
    /// The extra fields: everything after the seventh `:` (values may contain `:`, as in
    /// `userdb_quota_rule=*:storage=1G`), split into `key=value` words.
    pub(crate) fn extra_fields(&self) -> ExtraFields {
        // `rest` is `:uid:gid:gecos:home:shell:extra`.
        let Some(extra) = self
            .rest
            .strip_prefix(':')
            .and_then(|r| r.splitn(6, ':').nth(5))
        else {
            return Vec::new();
        };
        extra
            .split_ascii_whitespace()
            .map(|word| match word.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (word.to_owned(), String::new()),
            })
            .collect()
    }

    /// The same line with another password field.
    fn with_password(&self, field: &str) -> String {
        format!("{}:{field}{}{}", self.name, self.rest, self.cr)
    }
}

/// Reads and parses the file; `Ok(None)` if it does not exist.
pub(crate) fn read_document(path: &Path) -> Result<Option<Document>, AuthError> {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|e| {
                AuthError::io(
                    path,
                    io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
                )
            })?;
            Ok(Some(Document::parse(&text)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuthError::io(path, e)),
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    // Uniqueness only; create_new catches the (unlikely) collision anyway.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `doc` to a temporary file next to `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory. Keeps the mode (and, if permitted, owner) of an existing file; 0600 otherwise.
fn write_atomically(path: &Path, doc: &Document) -> Result<(), AuthError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let existing = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(AuthError::io(path, e)),
    };
    let file_name = path
        .file_name()
        .map_or_else(|| "passwd".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(
        ".{file_name}.tmp.{}.{}",
        std::process::id(),
        random_hex()
    ));

    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(doc.serialize().as_bytes())?;
        let mode = match &existing {
            Some(meta) => {
                let mine = file.metadata()?;
                if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid())
                    && let Err(e) =
                        std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))
                {
                    tracing::warn!(
                        path = %path.display(), uid = meta.uid(), gid = meta.gid(), error = %e,
                        "could not keep the passwd-file's owner; \
                         check that the server can still read it"
                    );
                }
                meta.permissions().mode() & 0o7777
            }
            None => 0o600,
        };
        // Explicitly, so the umask does not matter.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(AuthError::io(path, e));
    }
    // The rename is done; make it durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuthError::io(dir, e))
}

/// An exclusive `<file>.lock`, removed on drop.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn acquire(target: &Path) -> Result<Lock, AuthError> {
        let path = with_suffix(target, ".lock");
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    // Only informational: who holds it.
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > LOCK_STALE) {
                        tracing::warn!(lock = %path.display(), "removing stale passwd-file lock");
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(AuthError::Locked(path));
                    }
                    thread::sleep(LOCK_POLL);
                }
                Err(e) => return Err(AuthError::io(&path, e)),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify_password;

    const SAMPLE: &str = "\
# hato users
alice:{PLAIN}alicepw:1000:1000:Alice A.:/home/alice:/bin/sh:userdb_quota_rule=*:storage=1G

bob:{SHA512-CRYPT}$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1::::::
  # indented comment
carol:{plain}carolpw
bad name:{PLAIN}x
";

    fn setup(content: &str) -> (tempfile::TempDir, PasswdFile) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        fs::write(&path, content).expect("write");
        (dir, PasswdFile::new(path))
    }

    fn read(file: &PasswdFile) -> String {
        fs::read_to_string(file.path()).expect("read")
    }

    fn field_of(file: &PasswdFile, name: &str) -> String {
        let text = read(file);
        let doc = Document::parse(&text);
        let field = doc
            .users()
            .find(|u| u.name == name)
            .map(|u| u.password.to_owned());
        field.unwrap_or_else(|| panic!("{name} not in file"))
    }

    fn names(file: &PasswdFile) -> Vec<String> {
        file.list_users()
            .expect("list")
            .into_iter()
            .map(|u| u.name)
            .collect()
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn list_users_in_file_order_with_schemes() {
        let (_dir, file) = setup(SAMPLE);
        assert!(file.exists());
        let users = file.list_users().expect("list");
        let got: Vec<(&str, &str)> = users
            .iter()
            .map(|u| (u.name.as_str(), u.scheme.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", "PLAIN"),
                ("bob", "SHA512-CRYPT"),
                ("carol", "plain")
            ]
        );
    }

    #[test]
    fn add_set_delete_preserve_comments_and_extra_fields() {
        let (dir, file) = setup(SAMPLE);

        file.add_user("dave", "davepw", Scheme::Plain).expect("add");
        let text = read(&file);
        assert_eq!(text, format!("{SAMPLE}dave:{{PLAIN}}davepw\n"));

        file.set_password("alice", "newalice", Scheme::Sha512Crypt)
            .expect("set");
        let text = read(&file);
        let alice_line = text
            .lines()
            .find(|l| l.starts_with("alice:"))
            .expect("alice line");
        assert!(
            alice_line.starts_with("alice:{SHA512-CRYPT}$6$"),
            "{alice_line}"
        );
        assert!(
            alice_line.ends_with(
                ":1000:1000:Alice A.:/home/alice:/bin/sh:userdb_quota_rule=*:storage=1G"
            ),
            "{alice_line}"
        );
        assert!(verify_password(&field_of(&file, "alice"), b"newalice").expect("verify"));
        // Every other line untouched.
        let others = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("alice:"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            others(&text),
            others(&format!("{SAMPLE}dave:{{PLAIN}}davepw\n"))
        );

        file.set_password("bob", "bobpw", Scheme::Plain)
            .expect("set");
        assert!(read(&file).contains("\nbob:{PLAIN}bobpw::::::\n"));

        file.delete_user("carol").expect("delete");
        let text = read(&file);
        assert!(!text.contains("carol"));
        assert!(text.starts_with("# hato users\n"));
        assert!(text.contains("\n  # indented comment\n"));
        assert!(
            text.contains("\nbad name:{PLAIN}x\n"),
            "invalid lines are kept"
        );
        assert!(text.contains("\n\nbob:"), "blank line kept");
        assert_eq!(names(&file), ["alice", "bob", "dave"]);

        // No temporary or lock files left behind.
        assert_eq!(dir_entries(dir.path()), ["users"]);
    }

    #[test]
    fn extra_fields_are_split_into_words() {
        let (_dir, file) = setup(
            "alice:{PLAIN}a:1:1::/home/a::userdb_quota_rule=*:storage=1G  mail=maildir:~/M flag\n\
             bob:{PLAIN}b\n\
             carol:{PLAIN}c::::::\n\
             alice:{PLAIN}again::::::quota_rule=*:messages=1\n",
        );
        let got = file.extra_fields().expect("extra");
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            got,
            [(
                "alice".to_owned(),
                vec![
                    pair("userdb_quota_rule", "*:storage=1G"),
                    pair("mail", "maildir:~/M"),
                    pair("flag", ""),
                ]
            )]
        );
    }

    #[test]
    fn add_existing_user_fails_and_leaves_file_alone() {
        let (_dir, file) = setup(SAMPLE);
        match file.add_user("carol", "x", Scheme::Plain) {
            Err(AuthError::UserExists(n)) => assert_eq!(n, "carol"),
            other => panic!("expected UserExists, got {other:?}"),
        }
        assert_eq!(read(&file), SAMPLE);
    }

    #[test]
    fn missing_users_are_reported() {
        let (_dir, file) = setup(SAMPLE);
        assert!(matches!(
            file.set_password("zed", "pw", Scheme::Plain),
            Err(AuthError::NoSuchUser(n)) if n == "zed"
        ));
        assert!(matches!(file.delete_user("zed"), Err(AuthError::NoSuchUser(n)) if n == "zed"));
        // Case-sensitive, like Dovecot.
        assert!(matches!(
            file.delete_user("Alice"),
            Err(AuthError::NoSuchUser(_))
        ));
        assert_eq!(read(&file), SAMPLE);
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PasswdFile::new(dir.path().join("nope"));
        assert!(!file.exists());
        assert!(matches!(
            file.list_users(),
            Err(AuthError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(
            file.delete_user("a"),
            Err(AuthError::NoSuchUser(_))
        ));
        assert!(matches!(
            file.set_password("a", "pw", Scheme::Plain),
            Err(AuthError::NoSuchUser(_))
        ));
        assert!(!file.exists());
    }

    #[test]
    fn add_creates_file_and_parents_with_private_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PasswdFile::new(dir.path().join("etc/hato/users"));
        file.add_user("alice", "pw", Scheme::Plain).expect("add");
        assert!(file.exists());
        assert_eq!(read(&file), "alice:{PLAIN}pw\n");
        let mode = fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(dir.path().join("etc/hato"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(dir_entries(&dir.path().join("etc/hato")), ["users"]);
    }

    #[test]
    fn rewrite_keeps_existing_mode() {
        let (_dir, file) = setup(SAMPLE);
        fs::set_permissions(file.path(), Permissions::from_mode(0o640)).expect("chmod");
        file.add_user("dave", "pw", Scheme::Plain).expect("add");
        let mode = fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn rewrite_through_symlink_keeps_the_link() {
        let (dir, file) = setup(SAMPLE);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(file.path(), &link).expect("symlink");
        let via_link = PasswdFile::new(&link);
        via_link.add_user("dave", "pw", Scheme::Plain).expect("add");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert!(read(&file).ends_with("dave:{PLAIN}pw\n"));
    }

    #[test]
    fn invalid_names_and_passwords_rejected() {
        let (_dir, file) = setup(SAMPLE);
        for name in ["", "a:b", "a b", "a/b", "#x", "a\nb"] {
            assert!(matches!(
                file.add_user(name, "pw", Scheme::Plain),
                Err(AuthError::InvalidUserName(_))
            ));
            assert!(matches!(
                file.set_password(name, "pw", Scheme::Plain),
                Err(AuthError::InvalidUserName(_))
            ));
            assert!(matches!(
                file.delete_user(name),
                Err(AuthError::InvalidUserName(_))
            ));
        }
        for pw in ["", "a\nb", "a\0b"] {
            assert!(matches!(
                file.add_user("dave", pw, Scheme::Plain),
                Err(AuthError::InvalidPassword(_))
            ));
            assert!(matches!(
                file.set_password("alice", pw, Scheme::Plain),
                Err(AuthError::InvalidPassword(_))
            ));
        }
        assert_eq!(read(&file), SAMPLE);
    }

    #[test]
    fn crlf_lines_and_missing_final_newline() {
        let (_dir, file) = setup("# c\r\nalice:{PLAIN}a:1:1\r\nbob:{PLAIN}b\r\ncarol:{PLAIN}c");
        assert_eq!(names(&file), ["alice", "bob", "carol"]);
        assert!(verify_password(&field_of(&file, "bob"), b"b").expect("verify"));
        file.set_password("alice", "x", Scheme::Plain).expect("set");
        file.set_password("bob", "y", Scheme::Plain).expect("set");
        assert_eq!(
            read(&file),
            "# c\r\nalice:{PLAIN}x:1:1\r\nbob:{PLAIN}y\r\ncarol:{PLAIN}c\n"
        );
    }

    #[test]
    fn line_classification() {
        assert_eq!(Line::classify(""), Line::Comment);
        assert_eq!(Line::classify("   "), Line::Comment);
        assert_eq!(Line::classify("#a:b"), Line::Comment);
        assert_eq!(Line::classify(":{PLAIN}x"), Line::InvalidName(""));
        assert_eq!(Line::classify("a b:{PLAIN}x"), Line::InvalidName("a b"));
        let Line::User(u) = Line::classify("userdbonly") else {
            panic!()
        };
        assert_eq!((u.name, u.password, u.rest), ("userdbonly", "", ""));
        let Line::User(u) = Line::classify("u::1:2") else {
            panic!()
        };
        assert_eq!((u.name, u.password, u.rest), ("u", "", ":1:2"));
        assert_eq!(u.with_password("{PLAIN}p"), "u:{PLAIN}p:1:2");
    }

    #[test]
    fn a_held_lock_makes_writers_wait_and_a_stale_one_is_removed() {
        let (_dir, file) = setup(SAMPLE);
        let lock_path = with_suffix(file.path(), ".lock");
        let held = Lock::acquire(file.path()).expect("lock");
        let path = file.path().to_owned();
        let writer =
            thread::spawn(move || PasswdFile::new(path).add_user("dave", "pw", Scheme::Plain));
        thread::sleep(Duration::from_millis(100));
        assert!(
            !read(&file).contains("dave"),
            "writer must wait for the lock"
        );
        drop(held);
        writer
            .join()
            .expect("join")
            .expect("add after lock released");
        assert!(read(&file).contains("dave:{PLAIN}pw\n"));
        assert!(!lock_path.exists());

        // A lock file from a crashed process (old mtime) does not block forever.
        fs::write(&lock_path, "12345\n").expect("write lock");
        let old = SystemTime::now() - LOCK_STALE - Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        file.delete_user("dave").expect("delete despite stale lock");
        assert!(!lock_path.exists());
    }
}
