//! The E-Post reg tree and the live settings snapshot.
//!
//! This module owns:
//!
//! * the table of every setting ([`definitions`], [`find`]): name, kind, default, unit, range
//!   and meaning; it drives parsing, `hato reg list|get|set`, validation and the docs;
//! * the typed view of the settings ([`Settings`]);
//! * the on-disk tree ([`RegTree`]): loading it, and the atomic writes of `hato reg set`;
//! * the snapshot shared by all workers ([`SharedSettings`]): a lock-free pointer load to read,
//!   a pointer swap to reload;
//! * the default spool location ([`default_spool`]).
//!
//! [`start_reload`] (in `watch.rs`) applies changes to the tree live, on SIGHUP and inotify.
//!
//! # The tree
//!
//! The root is `<spool>/reg/epost/ims/EPST5IMAP4S/` (E-Post's `[mail work folder]`, by default
//! `/var/spool/epms/`, is the spool). Each setting is one file `<Name>.1`; names are matched
//! case-sensitively, exactly as E-Post spells them (`IDLECmd.1`, `NOOPPoll.1`, …).
//!
//! File convention:
//!
//! * flags and numbers hold a decimal number: ASCII digits only (no sign, no hex, no
//!   fraction), fitting `u64` and the setting's range; flags accept only `0` or `1`;
//! * text settings (socket addresses, paths) hold one line of UTF-8 text; an address is an IP
//!   and a port (`127.0.0.1:1143`, `[::1]:1143`; no host names); an empty `PasswdFile.1`
//!   means `<spool>/passwd` and a relative one is taken under the spool;
//! * lists (`ProxyProtocolFrom.1`, `DirectorNodes.1`) hold entries separated by commas or
//!   line breaks; empty entries are skipped, and an empty file is an empty list;
//! * surrounding whitespace and newlines (including `\r\n`) and a leading UTF-8 BOM are
//!   tolerated for every kind; a file over 4096 bytes is invalid.
//!
//! Loading:
//!
//! * a missing file means the default; a missing directory means all defaults;
//! * an invalid file (not a number, negative, out of range, empty, overflowing, unparsable
//!   address, not UTF-8) or an unreadable one keeps the previous value (the default on the
//!   first load) and is reported as a [`Problem`] with its path and reason;
//! * any other entry of the directory is reported as a [`Problem`] of kind
//!   [`ProblemKind::Unknown`], never fatal. The temporary files of `set` (prefix
//!   [`TEMP_PREFIX`]) are skipped.
//!
//! Writing ([`RegTree::set`]) validates first, then writes `<value>\n` to a temporary file in
//! the same directory, fsyncs it, renames it over `<Name>.1` and fsyncs the directory, so a
//! reader sees the old file or the new one, never a partial one.

mod error;
mod registry;
mod settings;
mod snapshot;
mod tree;
mod watch;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem, ProblemKind};
pub use registry::{
    FILE_SUFFIX, SettingDef, SettingId, SettingKind, def_of, definitions, find, suggest,
};
pub use settings::{Change, DirectorNode, PlaintextAuth, Settings};
pub use snapshot::{Reload, SharedSettings};
pub use tree::{
    Entry, LoadReport, MAX_FILE_BYTES, RegTree, Source, TEMP_PREFIX, TREE_DIR, is_temp_file_name,
    setting_for_file_name,
};
pub use watch::{
    COALESCE, RELOAD_ERRORS_METRIC, RELOADS_METRIC, RESTART_ONLY, ReloadWatcher, Reloader,
    describe_reload_metrics, needs_restart, start_reload,
};

/// The spool used when none is given; works without root: `$HATO_SPOOL` if set, else
/// `$XDG_DATA_HOME/hato` if set (and absolute), else `$HOME/.local/share/hato` if `HOME` is
/// set, else `./hato-spool`. Empty variables count as unset.
pub fn default_spool() -> PathBuf {
    spool_from(
        std::env::var_os("HATO_SPOOL"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

fn spool_from(hato: Option<OsString>, xdg: Option<OsString>, home: Option<OsString>) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(hato) {
        return p;
    }
    if let Some(p) = set(xdg).filter(|p| p.is_absolute()) {
        return p.join("hato");
    }
    if let Some(p) = set(home) {
        return p.join(".local/share/hato");
    }
    Path::new(".").join("hato-spool")
}
