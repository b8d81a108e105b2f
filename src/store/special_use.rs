//! Special-use attributes (RFC 6154) set by CREATE-SPECIAL-USE (§3), kept across restarts.
//!
//! The default folders of a new user (`Sent`, `Drafts`, `Trash`, `Junk`, `Archive`) have their
//! use by name. A folder created with `CREATE name (USE (\Archive))` keeps its use in a file
//! `hato-special-use` in its own Maildir++ directory, holding the attribute (`\Archive` and a
//! line end). Inside the folder's directory the use follows a RENAME and goes with a DELETE
//! without any bookkeeping, and tools that do not know the file leave it alone. Dovecot keeps
//! uses set this way in its attribute dictionary keyed by mailbox GUIDs, which Maildir++ folders
//! written by hato do not have, so there is no Dovecot format to share here.

use std::fs;
use std::io;
use std::path::Path;

use super::names::{self, INBOX};
use super::{SpecialUse, StoreError, UserMail, fsutil};

/// The file in a folder's directory that names its special use.
pub(crate) const FILE: &str = "hato-special-use";

/// The special use of folder `name` (canonical) under the Maildir root `root`: the folder's
/// own file, else the default for its name. INBOX has none.
pub(crate) fn of(root: &Path, name: &str) -> Option<SpecialUse> {
    if name == INBOX {
        return None;
    }
    read(&names::folder_dir(root, name)).or_else(|| names::special_use_of(name))
}

/// The use recorded in a folder directory, if any (an unreadable or unknown entry counts as
/// none: the folder is still listed).
fn read(dir: &Path) -> Option<SpecialUse> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => parse(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "maildir: cannot read special use");
            None
        }
    }
}

fn parse(bytes: &[u8]) -> Option<SpecialUse> {
    let text = bytes.trim_ascii();
    SpecialUse::ALL
        .into_iter()
        .find(|s| s.attribute().as_bytes().eq_ignore_ascii_case(text))
}

impl UserMail {
    /// CREATE with a special use (RFC 6154 §3): creates the folder as [`UserMail::create`]
    /// does, then records its use. If the use cannot be recorded the folder is deleted again:
    /// "If the server cannot create a mailbox with the designated special use defined, for
    /// whatever reason, it MUST NOT create the mailbox".
    pub fn create_special_use(&self, name: &str, special: SpecialUse) -> Result<(), StoreError> {
        self.create(name)?;
        let canonical = names::canonical_for_create(name)?;
        let dir = names::folder_dir(self.root(), &canonical);
        let mut line = special.attribute().as_bytes().to_vec();
        line.push(b'\n');
        if let Err(e) = fsutil::replace_file(&dir.join("tmp"), &dir.join(FILE), &line) {
            if let Err(undo) = self.delete(&canonical) {
                tracing::warn!(mailbox = %canonical, error = %undo, "cannot undo a CREATE");
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn parses_the_attribute_case_insensitively() {
        assert_eq!(parse(b"\\Archive\n"), Some(SpecialUse::Archive));
        assert_eq!(parse(b" \\junk "), Some(SpecialUse::Junk));
        assert_eq!(parse(b"\\Flagged\n"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn created_use_is_listed_and_follows_a_rename() {
        let spool = tempfile::tempdir().unwrap();
        let store = Store::new(spool.path());
        let mail = store.user("u").unwrap();
        mail.create_special_use("Old mail.2023", SpecialUse::Archive)
            .unwrap();
        let use_of = |mail: &UserMail, name: &str| {
            mail.list()
                .unwrap()
                .into_iter()
                .find(|i| i.name == name)
                .and_then(|i| i.special_use)
        };
        assert_eq!(use_of(&mail, "Old mail.2023"), Some(SpecialUse::Archive));
        assert_eq!(use_of(&mail, "Old mail"), None);
        assert_eq!(use_of(&mail, "Sent"), Some(SpecialUse::Sent));
        // Another Store on the same spool: what a restart sees.
        let again = Store::new(spool.path()).user("u").unwrap();
        assert_eq!(use_of(&again, "Old mail.2023"), Some(SpecialUse::Archive));
        again.rename("Old mail.2023", "Kept").unwrap();
        assert_eq!(use_of(&again, "Kept"), Some(SpecialUse::Archive));
        again.delete("Kept").unwrap();
        again.create("Kept").unwrap();
        assert_eq!(
            use_of(&again, "Kept"),
            None,
            "a new folder starts without a use"
        );
        assert!(matches!(
            again.create_special_use("Kept", SpecialUse::Junk),
            Err(StoreError::AlreadyExists(_))
        ));
    }
}
