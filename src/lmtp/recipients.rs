//! Which recipients exist: the user names of the passwd-file, re-read when the file changes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::{AuthError, PasswdFile};

use super::command::Address;

/// The passwd-file's user names, cached; each lookup costs one `stat()` and re-reads the file
/// when it was replaced or modified, so `hato user add` takes effect at the next `RCPT`.
pub(crate) struct Recipients {
    file: PasswdFile,
    cached: Mutex<Option<(Stamp, Arc<Names>)>>,
}

type Stamp = (u64, u64, u64, i64, i64, i64, i64);

struct Names {
    exact: HashSet<String>,
    /// ASCII-lowercased name -> the name in the file (the first one, if several differ only
    /// in case).
    folded: HashMap<String, String>,
}

impl Recipients {
    pub fn new(file: PasswdFile) -> Self {
        Recipients {
            file,
            cached: Mutex::new(None),
        }
    }

    /// The user `address` delivers to: the first of [`Address::candidates`] that is a user,
    /// compared exactly, then ignoring ASCII case. `Ok(None)`: no such user. `Err`: the
    /// passwd-file cannot be read (a temporary failure for the sender).
    pub fn resolve(&self, address: &Address) -> Result<Option<String>, AuthError> {
        let names = self.names()?;
        let candidates = address.candidates();
        if let Some(found) = candidates.iter().find(|c| names.exact.contains(*c)) {
            return Ok(Some(found.clone()));
        }
        Ok(candidates
            .iter()
            .find_map(|c| names.folded.get(&c.to_ascii_lowercase()).cloned()))
    }

    fn names(&self) -> Result<Arc<Names>, AuthError> {
        let path = self.file.path();
        let stamp = fs::metadata(path)
            .map(|m| {
                (
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
            })
            .map_err(|e| AuthError::io(path, e))?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, names)) = cached.as_ref()
            && *s == stamp
        {
            return Ok(names.clone());
        }
        let users = self.file.list_users()?;
        let mut exact = HashSet::with_capacity(users.len());
        let mut folded = HashMap::with_capacity(users.len());
        for user in users {
            folded
                .entry(user.name.to_ascii_lowercase())
                .or_insert_with(|| user.name.clone());
            exact.insert(user.name);
        }
        let names = Arc::new(Names { exact, folded });
        *cached = Some((stamp, names.clone()));
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scheme;
    use crate::lmtp::command::{Command, parse};

    fn address(text: &str) -> Address {
        match parse(format!("RCPT TO:<{text}>").as_bytes()) {
            Ok(Command::Rcpt(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_addresses_to_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PasswdFile::new(dir.path().join("passwd"));
        for name in ["carol", "Dave", "eve@example.com"] {
            file.add_user(name, "pw", Scheme::Plain).expect("add");
        }
        let r = Recipients::new(file.clone());
        let resolve = |a: &str| r.resolve(&address(a)).expect("lookup");
        assert_eq!(resolve("carol").as_deref(), Some("carol"));
        assert_eq!(resolve("carol@example.com").as_deref(), Some("carol"));
        assert_eq!(resolve("CAROL@example.com").as_deref(), Some("carol"));
        assert_eq!(resolve("carol+lists@x").as_deref(), Some("carol"));
        assert_eq!(resolve("dave@x").as_deref(), Some("Dave"));
        assert_eq!(
            resolve("eve@example.com").as_deref(),
            Some("eve@example.com")
        );
        assert_eq!(resolve("eve@other.example"), None);
        assert_eq!(resolve("nobody@example.com"), None);

        // A user added later is seen without a restart.
        file.add_user("frank", "pw", Scheme::Plain).expect("add");
        assert_eq!(resolve("frank@x").as_deref(), Some("frank"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Recipients::new(PasswdFile::new(dir.path().join("none")));
        assert!(r.resolve(&address("carol")).is_err());
    }
}
