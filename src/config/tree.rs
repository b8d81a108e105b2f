//! The on-disk reg tree: reading every setting file, and the atomic writes of `hato reg set`.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{ConfigError, Problem, ProblemKind};
use super::registry::{FILE_SUFFIX, SettingDef, definitions, find, suggest};
use super::settings::{Settings, quote, trim_value};

/// The tree's location under a spool.
pub const TREE_DIR: &str = "reg/epost/ims/EPST5IMAP4S";

/// Prefix of the temporary files `set` writes before renaming them into place. Entries with
/// this prefix are skipped by the unknown-file scan (and should be by a directory watcher).
pub const TEMP_PREFIX: &str = ".hato-tmp.";

/// A setting file larger than this is invalid (a setting is one short line).
pub const MAX_FILE_BYTES: u64 = 4096;

/// Whether a directory entry is one of `set`'s temporary files.
pub fn is_temp_file_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

/// The known setting a directory entry is, if any: exactly `<Name>.1`, case-sensitive.
pub fn setting_for_file_name(name: &OsStr) -> Option<&'static SettingDef> {
    let name = name.to_str()?;
    let bare = name.strip_suffix(FILE_SUFFIX)?;
    find(bare).filter(|d| d.name == bare)
}

/// Result of reading the whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The settings to use: files that parse, defaults for missing files, and the previous
    /// value for files with a problem.
    pub settings: Settings,
    /// Every problem found (invalid, unreadable and unknown files), known settings first in
    /// table order, then unknown files sorted by path.
    pub problems: Vec<Problem>,
}

/// Where the value of an [`Entry`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The setting file exists (its value may still be invalid: see [`Entry::problem`]).
    File(PathBuf),
    /// No file: the table's default.
    Default,
}

/// One setting as `hato reg get|list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub def: &'static SettingDef,
    /// The trimmed file text (lossy if not UTF-8; empty if unreadable), or the default.
    pub value: String,
    pub source: Source,
    /// Why the file's value is not in force, if it is not.
    pub problem: Option<String>,
}

/// What reading one setting file gave.
enum FileRead {
    Missing,
    Text(String),
    /// The bytes are not a valid setting text at all (too large, not UTF-8).
    Invalid {
        lossy: String,
        reason: String,
    },
    Unreadable(io::Error),
}

fn read_setting_file(path: &Path) -> FileRead {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return FileRead::Unreadable(e),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return FileRead::Unreadable(e);
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return FileRead::Invalid {
            lossy: String::from_utf8_lossy(&bytes[..64]).trim().to_string(),
            reason: format!("file is larger than {MAX_FILE_BYTES} bytes"),
        };
    }
    match String::from_utf8(bytes) {
        Ok(s) => FileRead::Text(s),
        Err(e) => {
            let lossy = String::from_utf8_lossy(e.as_bytes());
            FileRead::Invalid {
                reason: format!("{} is not UTF-8 text", quote(trim_value(&lossy))),
                lossy: trim_value(&lossy).to_string(),
            }
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The on-disk tree under a spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegTree {
    root: PathBuf,
}

impl RegTree {
    /// The tree of `spool`: `<spool>/reg/epost/ims/EPST5IMAP4S`.
    pub fn for_spool(spool: &Path) -> Self {
        RegTree {
            root: spool.join(TREE_DIR),
        }
    }

    /// A tree at an explicit directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        RegTree { root: root.into() }
    }

    /// The tree's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a setting.
    pub fn path_of(&self, def: &SettingDef) -> PathBuf {
        self.root.join(def.file_name())
    }

    /// Create the tree's directory and its parents.
    pub fn create_dirs(&self) -> Result<(), ConfigError> {
        fs::create_dir_all(&self.root).map_err(|e| ConfigError::io(&self.root, e))
    }

    /// Read every file, starting from `previous` so that an invalid or unreadable file keeps
    /// the value in force. A missing file gives the default; a missing directory gives all
    /// defaults and no problems.
    pub fn load_over(&self, previous: &Settings) -> LoadReport {
        let defaults = Settings::default();
        match fs::metadata(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return LoadReport {
                    settings: defaults,
                    problems: Vec::new(),
                };
            }
            Err(e) => return self.unreadable_root(previous, format!("cannot read: {e}")),
            Ok(m) if !m.is_dir() => {
                return self.unreadable_root(previous, "not a directory".to_string());
            }
            Ok(_) => {}
        }

        let mut settings = previous.clone();
        let mut problems = Vec::new();
        for def in definitions() {
            let path = self.path_of(def);
            let problem = |kind, reason| Problem {
                path: path.clone(),
                kind,
                reason,
            };
            match read_setting_file(&path) {
                FileRead::Missing => settings.copy_field(&defaults, def.id),
                FileRead::Text(text) => {
                    if let Err(reason) = settings.apply(def, &text) {
                        problems.push(problem(ProblemKind::Invalid, reason));
                    }
                }
                FileRead::Invalid { reason, .. } => {
                    problems.push(problem(ProblemKind::Invalid, reason));
                }
                FileRead::Unreadable(e) => {
                    problems.push(problem(
                        ProblemKind::Unreadable,
                        format!("cannot read: {e}"),
                    ));
                }
            }
        }
        match self.unknown_files() {
            Ok(mut unknown) => problems.append(&mut unknown),
            Err(e) => problems.push(Problem {
                path: self.root.clone(),
                kind: ProblemKind::Unreadable,
                reason: format!("cannot list directory: {e}"),
            }),
        }
        LoadReport { settings, problems }
    }

    /// [`load_over`](Self::load_over) the defaults.
    pub fn load(&self) -> LoadReport {
        self.load_over(&Settings::default())
    }

    fn unreadable_root(&self, previous: &Settings, reason: String) -> LoadReport {
        LoadReport {
            settings: previous.clone(),
            problems: vec![Problem {
                path: self.root.clone(),
                kind: ProblemKind::Unreadable,
                reason,
            }],
        }
    }

    /// Problems of kind `Unknown` for every entry that is not a known setting, sorted by path.
    /// A missing directory has none.
    fn unknown_files(&self) -> io::Result<Vec<Problem>> {
        let dir = match fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name();
            if is_temp_file_name(&name) || setting_for_file_name(&name).is_some() {
                continue;
            }
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let mut reason = if is_dir {
                "unexpected directory; not a known setting".to_string()
            } else {
                "not a known setting; ignored".to_string()
            };
            match name.to_str() {
                Some(n) => {
                    if let Some(s) = suggest(n) {
                        reason.push_str(&format!(" (did you mean {s}? names are case-sensitive)"));
                    }
                }
                None => reason.push_str(" (file name is not UTF-8)"),
            }
            out.push(Problem {
                path: entry.path(),
                kind: ProblemKind::Unknown,
                reason,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Validate `value` for the setting `name` (with or without `.1`), then write it
    /// atomically as `<trimmed value>\n`: a temporary file in the same directory, fsync,
    /// rename over the setting file, fsync of the directory. Creates the tree if missing.
    /// On an unknown name or an invalid value nothing is written.
    pub fn set(&self, name: &str, value: &str) -> Result<(), ConfigError> {
        let def = lookup(name)?;
        let text = trim_value(value);
        def.validate(text)
            .map_err(|reason| ConfigError::InvalidValue {
                name: def.file_name(),
                reason,
            })?;
        self.create_dirs()?;
        self.write_atomic(&def.file_name(), format!("{text}\n").as_bytes())
    }

    /// Remove the file of setting `name` so that the default applies. No file is not an error.
    pub fn reset(&self, name: &str) -> Result<(), ConfigError> {
        let def = lookup(name)?;
        let path = self.path_of(def);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ConfigError::io(path, e)),
        }
    }

    fn write_atomic(&self, file_name: &str, content: &[u8]) -> Result<(), ConfigError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!(
            "{TEMP_PREFIX}{file_name}.{}.{n}",
            std::process::id()
        ));
        let dest = self.root.join(file_name);
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(content)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(ConfigError::io(tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(ConfigError::io(dest, e));
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), ConfigError> {
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| ConfigError::io(&self.root, e))
    }

    /// The current raw value of setting `name` (with or without `.1`).
    pub fn get(&self, name: &str) -> Result<Entry, ConfigError> {
        Ok(self.entry(lookup(name)?))
    }

    /// One entry per known setting in table order, and the `Unknown` problems of the
    /// directory. A missing directory lists all defaults; an unlistable one is an error.
    pub fn list(&self) -> Result<(Vec<Entry>, Vec<Problem>), ConfigError> {
        let unknown = self
            .unknown_files()
            .map_err(|e| ConfigError::io(&self.root, e))?;
        let entries = definitions().iter().map(|d| self.entry(d)).collect();
        Ok((entries, unknown))
    }

    fn entry(&self, def: &'static SettingDef) -> Entry {
        let path = self.path_of(def);
        match read_setting_file(&path) {
            FileRead::Missing => Entry {
                def,
                value: def.default.to_string(),
                source: Source::Default,
                problem: None,
            },
            FileRead::Text(text) => Entry {
                def,
                value: trim_value(&text).to_string(),
                problem: def.validate(&text).err(),
                source: Source::File(path),
            },
            FileRead::Invalid { lossy, reason } => Entry {
                def,
                value: lossy,
                source: Source::File(path),
                problem: Some(reason),
            },
            FileRead::Unreadable(e) => Entry {
                def,
                value: String::new(),
                source: Source::File(path),
                problem: Some(format!("cannot read: {e}")),
            },
        }
    }
}

/// The definition for a user-given name, or `UnknownSetting` with a suggestion.
fn lookup(name: &str) -> Result<&'static SettingDef, ConfigError> {
    find(name).ok_or_else(|| ConfigError::UnknownSetting {
        name: name.to_string(),
        suggestion: suggest(name),
    })
}
