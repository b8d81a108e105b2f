//! The store's error type, and which IMAP response code each error stands for.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a storage operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The mailbox name cannot be stored (empty level, `/`, control characters, too long...).
    /// The text says which name and why.
    #[error("invalid mailbox name: {0}")]
    InvalidName(String),
    /// The user name cannot be a directory under the spool.
    #[error("invalid user name {0:?}")]
    InvalidUser(String),
    /// A keyword that cannot be stored (empty, spaces, control characters, a `\` flag).
    #[error("invalid keyword {0:?}")]
    InvalidKeyword(String),
    #[error("mailbox {0:?} does not exist")]
    NoSuchMailbox(String),
    #[error("mailbox {0:?} already exists")]
    AlreadyExists(String),
    #[error("INBOX cannot be deleted")]
    InboxCannotBeDeleted,
    /// DELETE of a name that is only a parent of other mailboxes (`\Noselect`, RFC 3501 §6.3.4).
    #[error("mailbox {0:?} does not exist but has children; delete them first")]
    HasChildren(String),
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    #[error("too many keywords in this mailbox (at most 26)")]
    TooManyKeywords,
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The write would take the user over a STORAGE or MESSAGE limit (see `quota`).
    #[error("Quota exceeded (mailbox for user is full)")]
    OverQuota,
    #[error("corrupt file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// The RFC 5530 response code (RFC 9051 for `HASCHILDREN`) for a tagged `NO`.
    pub fn response_code(&self) -> &'static str {
        match self {
            StoreError::InvalidName(_)
            | StoreError::InvalidKeyword(_)
            | StoreError::InboxCannotBeDeleted => "CANNOT",
            StoreError::NoSuchMailbox(_) => "NONEXISTENT",
            StoreError::AlreadyExists(_) => "ALREADYEXISTS",
            StoreError::HasChildren(_) => "HASCHILDREN",
            StoreError::NoSuchMessage(_) => "EXPUNGEISSUED",
            StoreError::TooManyKeywords => "LIMIT",
            StoreError::Corrupt { .. } => "CORRUPTION",
            StoreError::OverQuota => "OVERQUOTA",
            StoreError::Io { source, .. } if is_out_of_space(source) => "OVERQUOTA",
            StoreError::InvalidUser(_) | StoreError::Io { .. } => "SERVERBUG",
        }
    }
}

/// Disk full or quota exceeded.
fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
