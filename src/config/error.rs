//! Errors of the reg tree commands and the problems a load reports.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Failure of a reg tree command (`set`, `get`, `list`, `create_dirs`). Loading never fails:
/// it reports [`Problem`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The name is not a known setting (names are case-sensitive).
    #[error("unknown setting {name:?}{}", did_you_mean(.suggestion))]
    UnknownSetting {
        name: String,
        /// The file name of a known setting that differs only in case or in the `.1` suffix.
        suggestion: Option<String>,
    },
    /// The value does not parse or is out of range for the setting; nothing was written.
    #[error("invalid value for {name}: {reason}")]
    InvalidValue {
        /// The setting's file name (`IDLELoop.1`).
        name: String,
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}? names are case-sensitive)"),
        None => String::new(),
    }
}

impl ConfigError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConfigError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What is wrong with a file of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A known setting whose content does not parse or is out of range; the previous value stays.
    Invalid,
    /// A file that is not a known setting; ignored.
    Unknown,
    /// A file or the directory could not be read; the previous value stays.
    Unreadable,
}

impl ProblemKind {
    /// Lowercase name, usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Invalid => "invalid",
            ProblemKind::Unknown => "unknown",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found while reading the tree. Never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or, for an unreadable tree, the directory).
    pub path: PathBuf,
    pub kind: ProblemKind,
    /// Human-readable reason.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}
