//! User authentication against a Dovecot-format passwd-file.
//!
//! This module owns everything about users and their passwords:
//!
//! * [`Scheme`], [`hash_password`] and [`verify_password`]: the `{SCHEME}data` password field
//!   (`{ARGON2ID}`/`{ARGON2I}` PHC strings, `{SHA512-CRYPT}` / `{CRYPT}` `$6$` strings,
//!   `{PLAIN}`/`{CLEAR}` with optional `.BASE64`/`.B64`/`.HEX` encoding suffix), in `scheme.rs`.
//! * [`PasswdFile`]: the file on disk (`user:password:uid:gid:gecos:home:shell:extra_fields`),
//!   read and atomically rewritten by the `hato user ...` commands, in `passwd_file.rs`.
//! * [`UserDirectory`]: the cached, automatically reloaded view the running server checks
//!   logins against, in `directory.rs`.
//!
//! Nothing here does network I/O; [`UserDirectory::verify`] blocks (argon2 costs tens of
//! milliseconds) and is meant to be called from a blocking thread pool.

mod directory;
mod passwd_file;
mod scheme;
pub mod throttle;

use std::path::PathBuf;

pub use directory::UserDirectory;
pub use passwd_file::{PasswdFile, UserInfo};
pub use scheme::{MAX_PASSWORD_LEN, Scheme, hash_password, verify_password};

/// Longest accepted user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 255;

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password (deliberately the same error for both).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// `add_user` for a name that is already in the file.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// `set_password` / `delete_user` for a name that is not in the file.
    #[error("no such user {0:?}")]
    NoSuchUser(String),
    /// See [`validate_user_name`].
    #[error(
        "invalid user name {0:?}: must be 1-255 bytes without ':', '/', whitespace or control \
         characters, must not start with '#' and must not be '.' or '..'"
    )]
    InvalidUserName(String),
    /// A password that cannot be stored (empty, too long, contains a line break or NUL).
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    /// A `{SCHEME}` this server does not implement.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// The stored hash after `{SCHEME}` cannot be parsed.
    #[error("malformed password hash: {0}")]
    MalformedHash(String),
    /// Reading or writing the passwd-file (or its lock / temporary file) failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds the passwd-file lock for too long.
    #[error("{} is locked by another process (remove the lock file if it is stale)", .0.display())]
    Locked(PathBuf),
    /// Hashing a new password failed (random source or hash library error).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl AuthError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuthError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Checks a user name for the passwd-file: non-empty, at most [`MAX_USER_NAME_LEN`] bytes, no
/// `:`, `/`, whitespace or control characters, no leading `#` (it would read back as a comment),
/// and not `.` or `..` (names may become directory names in the mail store).
pub fn validate_user_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && !name.starts_with('#')
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == ':' || c == '/' || c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidUserName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_user_names() {
        for name in [
            "alice",
            "bob@example.com",
            "a.b-c_d+e",
            "ünïcødé",
            "x",
            &"a".repeat(255),
        ] {
            assert!(validate_user_name(name).is_ok(), "{name:?} should be valid");
        }
    }

    #[test]
    fn invalid_user_names_rejected() {
        let long = "a".repeat(256);
        for name in [
            "",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "a\u{0}b",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{a0}b",
            "a/b",
            "#root",
            ".",
            "..",
            long.as_str(),
        ] {
            match validate_user_name(name) {
                Err(AuthError::InvalidUserName(n)) => assert_eq!(n, name),
                other => panic!("{name:?}: expected InvalidUserName, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let e = AuthError::io("/x/y", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("/x/y: "), "{e}");
        assert_eq!(
            AuthError::InvalidCredentials.to_string(),
            "invalid credentials"
        );
        assert_eq!(
            AuthError::NoSuchUser("bob".into()).to_string(),
            "no such user \"bob\""
        );
    }
}
