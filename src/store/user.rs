//! Users and their folder trees: the [`Store`] (all users under a spool), [`UserMail`] (one
//! user's mailboxes: LIST, CREATE, DELETE, RENAME, SUBSCRIBE, open), and the table that makes
//! every session of a user share one [`Mailbox`] per folder.
//!
//! Locking: each user has one mutex, held by folder-tree changes (create, delete, rename,
//! subscriptions) and by `open` while it loads a folder, so a folder is never loaded twice and
//! never opened while it is being renamed. Listing takes no lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::StoreError;
use super::fsutil;
use super::keywords;
use super::mailbox::{Mailbox, new_uid_validity};
use super::names::{self, INBOX};
use super::quota::{self, QuotaPolicy, QuotaState, UserQuota};
use super::subscriptions;
use super::uidlist;

/// A special-use folder (RFC 6154), created for every new user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The LIST attribute, e.g. `\Sent`.
    pub fn attribute(&self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The top-level folder that has this use.
    pub fn folder_name(&self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }
}

/// One name of a user's folder tree, as LIST and LSUB need it.
///
/// LIST shows names with `exists || has_children` (`\Noselect` when `!exists`: a parent whose
/// folder does not exist, e.g. after DELETE of a folder with children); LSUB shows `subscribed`
/// names (`\NonExistent`/`\Noselect` when `!exists`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// UTF-8, `.`-separated, `INBOX` for the root.
    pub name: String,
    pub special_use: Option<SpecialUse>,
    /// Some existing folder is below this name.
    pub has_children: bool,
    pub subscribed: bool,
    /// A folder exists under this name (false for a parent only, or a subscribed name only).
    pub exists: bool,
}

/// What all handles of one user share.
pub(crate) struct UserShared {
    root: PathBuf,
    /// The store's change hook (see [`Store::on_change`]).
    hook: Arc<OnceLock<Box<ChangeHook>>>,
    /// The store's cache of recently used folders.
    recent: Arc<RecentFolders>,
    /// Folders open somewhere, by canonical name. The user's lock (see the module doc).
    open: Mutex<HashMap<String, Weak<Mailbox>>>,
    initialized: AtomicBool,
    /// The user's limits and `maildirsize` (see [`super::quota`]).
    pub(crate) quota: UserQuota,
}

/// All users' mail under a spool: user `U`'s Maildir is `<spool>/mail/U/`. Shared by all
/// worker threads; use one `Store` per spool in a process (each keeps its own table of open
/// folders).
pub struct Store {
    mail_dir: PathBuf,
    users: Mutex<Users>,
    recent: Arc<RecentFolders>,
    hook: Arc<OnceLock<Box<ChangeHook>>>,
    quota: Arc<OnceLock<Arc<dyn QuotaPolicy>>>,
}

/// Called with a folder's [`Mailbox::id`] and its watcher bits whenever a watched folder's
/// index changes, from whichever thread made the change. Must not block.
pub type ChangeHook = dyn Fn(usize, u64) + Send + Sync;

impl UserShared {
    /// The user's Maildir root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn changed(&self, mailbox: usize, watchers: u64) {
        if let Some(hook) = self.hook.get() {
            hook(mailbox, watchers);
        }
    }
}

/// Messages whose folders' indexes stay loaded after their last session left (about 120 bytes
/// each, so ~120 MiB at most).
const RECENT_MESSAGES: usize = 1_000_000;

/// Keeps the most recently opened folders loaded after their last session leaves. Many clients
/// reconnect every few minutes; without this, each reconnection would re-read a large folder's
/// uidlist and directory (a quarter of a second at 100,000 messages).
struct RecentFolders {
    /// Most recent first, with the message count each held when it was last opened.
    folders: Mutex<std::collections::VecDeque<(Arc<Mailbox>, usize)>>,
}

impl RecentFolders {
    fn touch(&self, mailbox: &Arc<Mailbox>) {
        let messages = mailbox.snapshot().messages.len();
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        folders.retain(|(m, _)| !Arc::ptr_eq(m, mailbox) && !m.is_gone());
        folders.push_front((mailbox.clone(), messages));
        let mut total = 0;
        let keep = folders
            .iter()
            .take_while(|(_, n)| {
                total += n;
                total <= RECENT_MESSAGES
            })
            .count()
            .max(1);
        folders.truncate(keep);
    }
}

struct Users {
    by_name: HashMap<String, Weak<UserShared>>,
    /// Size at which the table is next swept of users nobody holds.
    sweep_at: usize,
}

impl Store {
    pub fn new(spool: &Path) -> Store {
        Store {
            mail_dir: spool.join("mail"),
            users: Mutex::new(Users {
                by_name: HashMap::new(),
                sweep_at: 1024,
            }),
            recent: Arc::new(RecentFolders {
                folders: Mutex::new(std::collections::VecDeque::new()),
            }),
            hook: Arc::new(OnceLock::new()),
            quota: Arc::new(OnceLock::new()),
        }
    }

    /// Installs where users' quota limits come from (once; later calls are ignored). Without
    /// it nothing is limited.
    pub fn set_quota_policy(&self, policy: Arc<dyn QuotaPolicy>) {
        let _ = self.quota.set(policy);
    }

    /// Installs the hook told about changes to watched folders (once; later calls are ignored).
    pub fn on_change(&self, hook: impl Fn(usize, u64) + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
    }

    /// The user's mail. The first use of a user creates the Maildir root and, when the user has
    /// no folders and no subscriptions yet, the special-use folders (Sent, Drafts, Trash, Junk,
    /// Archive), subscribed together with INBOX.
    pub fn user(&self, user: &str) -> Result<UserMail, StoreError> {
        validate_user(user)?;
        let shared = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            match users.by_name.get(user).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    if users.by_name.len() >= users.sweep_at {
                        users.by_name.retain(|_, w| w.strong_count() > 0);
                        users.sweep_at = (users.by_name.len() * 2).max(1024);
                    }
                    let shared = Arc::new(UserShared {
                        root: self.mail_dir.join(user),
                        recent: self.recent.clone(),
                        hook: self.hook.clone(),
                        open: Mutex::new(HashMap::new()),
                        initialized: AtomicBool::new(false),
                        quota: UserQuota::new(user, self.quota.clone()),
                    });
                    users
                        .by_name
                        .insert(user.to_string(), Arc::downgrade(&shared));
                    shared
                }
            }
        };
        let mail = UserMail { shared };
        mail.initialize()?;
        Ok(mail)
    }
}

/// A user name must be one directory name under `<spool>/mail/`.
fn validate_user(user: &str) -> Result<(), StoreError> {
    let ok = !user.is_empty()
        && user.len() <= 255
        && !user.starts_with('.')
        && !user.contains('/')
        && !user.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidUser(user.to_string()))
    }
}

/// One user's mailboxes. Cheap to clone; clones share the user's table of open folders.
#[derive(Clone)]
pub struct UserMail {
    shared: Arc<UserShared>,
}

type OpenTable<'a> = MutexGuard<'a, HashMap<String, Weak<Mailbox>>>;

impl UserMail {
    /// The user's Maildir root (INBOX).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The user's quota root: its limits, and its usage when anything is limited (from
    /// `maildirsize`, recalculated when needed; see [`super::quota`]).
    pub fn quota(&self) -> Result<QuotaState, StoreError> {
        self.shared.quota.state(self.root())
    }

    /// Whether a folder (or INBOX) exists under this name: one `stat`, nothing loaded.
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let name = names::canonical(name)?;
        Ok(name == INBOX || self.folder_exists(&name))
    }

    /// Every folder with INBOX first, parents of folders that do not exist themselves, and
    /// subscribed names without a folder; ordered by hierarchy (a parent before its
    /// children, levels compared as strings).
    pub fn list(&self) -> Result<Vec<MailboxInfo>, StoreError> {
        let folders = self.folders()?;
        let subscribed = subscriptions::read(self.root())?;
        let mut infos: BTreeMap<String, MailboxInfo> = BTreeMap::new();
        fn info<'a>(
            infos: &'a mut BTreeMap<String, MailboxInfo>,
            name: &str,
        ) -> &'a mut MailboxInfo {
            infos
                .entry(name.to_string())
                .or_insert_with(|| MailboxInfo {
                    name: name.to_string(),
                    special_use: None,
                    has_children: false,
                    subscribed: false,
                    exists: false,
                })
        }
        for name in std::iter::once(INBOX.to_string()).chain(folders) {
            for parent in names::parents(&name) {
                info(&mut infos, parent).has_children = true;
            }
            let i = info(&mut infos, &name);
            i.exists = true;
            i.special_use = super::special_use::of(self.root(), &name);
        }
        for name in subscribed {
            info(&mut infos, &name).subscribed = true;
        }
        let mut list: Vec<MailboxInfo> = infos.into_values().collect();
        fn key(name: &str) -> (bool, Vec<&str>) {
            (
                !names::is_within(name, INBOX),
                name.split(names::SEP).collect(),
            )
        }
        list.sort_by(|a, b| key(&a.name).cmp(&key(&b.name)));
        Ok(list)
    }

    /// Creates a folder, and its missing parents (RFC 3501 CREATE); one trailing separator is
    /// ignored. The new folder starts with a fresh UIDVALIDITY.
    pub fn create(&self, name: &str) -> Result<(), StoreError> {
        let name = names::canonical_for_create(name)?;
        if name == INBOX {
            return Err(StoreError::AlreadyExists(name));
        }
        let _table = self.lock();
        if self.folder_exists(&name) {
            return Err(StoreError::AlreadyExists(name));
        }
        for parent in names::parents(&name) {
            if parent != INBOX && !self.folder_exists(parent) {
                match self.create_folder(parent) {
                    Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.create_folder(&name)
    }

    /// Deletes a folder with its messages. Its children stay (the name then lists as
    /// `\Noselect`); a name that is only a parent answers `HasChildren`. Subscriptions are
    /// left alone (RFC 3501 §6.3.9). Sessions that have the folder open get `NoSuchMailbox`.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = names::canonical(name)?;
        if name == INBOX {
            return Err(StoreError::InboxCannotBeDeleted);
        }
        let mut table = self.lock();
        if !self.folder_exists(&name) {
            let has_children = self
                .folders()?
                .iter()
                .any(|f| f != &name && names::is_within(f, &name));
            return Err(if has_children {
                StoreError::HasChildren(name)
            } else {
                StoreError::NoSuchMailbox(name)
            });
        }
        if let Some(mailbox) = table.remove(&name).and_then(|w| w.upgrade()) {
            mailbox.mark_gone();
        }
        let dir = self.dir_of(&name);
        // What leaves the quota with it, counted before it goes (an error only costs accuracy
        // until the next recalculation, so it does not stop the DELETE).
        let freed = quota::folder_usage(&dir).map(|(usage, _)| usage).ok();
        // Out of sight first (one rename), then removed at leisure.
        let trash_dir = self.root().join("tmp");
        fsutil::ensure_dir(&trash_dir)?;
        let trash = trash_dir.join(format!("{}{}", fsutil::TRASH_PREFIX, fsutil::unique_name()));
        fs::rename(&dir, &trash).map_err(|e| StoreError::io(&dir, e))?;
        fsutil::fsync_dir(self.root())?;
        if let Some(freed) = freed {
            self.shared.quota.record(
                self.root(),
                -i64::try_from(freed.bytes).unwrap_or(i64::MAX),
                -i64::try_from(freed.messages).unwrap_or(i64::MAX),
            );
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "maildir: cannot remove a deleted folder");
        }
        Ok(())
    }

    /// Renames a folder and its children; subscriptions of the renamed names follow. Renaming
    /// INBOX moves all its messages into a new folder `to` and leaves INBOX empty, its
    /// children untouched (RFC 3501 §6.3.5). Missing parents of `to` are created.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let from = names::canonical(from)?;
        let to = names::canonical(to)?;
        if to == INBOX || from == to {
            return Err(StoreError::AlreadyExists(to));
        }
        let mut table = self.lock();
        if from == INBOX {
            return self.rename_inbox(&mut table, &to);
        }
        if !self.folder_exists(&from) {
            return Err(StoreError::NoSuchMailbox(from));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for folder in self.folders()? {
            if names::is_within(&folder, &from) {
                let target = names::canonical(&format!("{to}{}", &folder[from.len()..]))?;
                pairs.push((folder, target));
            }
        }
        // Parents before children, so a partial failure can be undone in reverse.
        pairs.sort_by_key(|(f, _)| f.len());
        for (_, target) in &pairs {
            if fs::symlink_metadata(self.dir_of(target)).is_ok() {
                return Err(StoreError::AlreadyExists(target.clone()));
            }
        }
        for (folder, _) in &pairs {
            if let Some(mailbox) = table.remove(folder).and_then(|w| w.upgrade()) {
                mailbox.mark_gone();
            }
        }
        for (done, (folder, target)) in pairs.iter().enumerate() {
            let (a, b) = (self.dir_of(folder), self.dir_of(target));
            if let Err(e) = fs::rename(&a, &b) {
                for (f, t) in pairs[..done].iter().rev() {
                    let _ = fs::rename(self.dir_of(t), self.dir_of(f));
                }
                return Err(StoreError::io(a, e));
            }
        }
        fsutil::fsync_dir(self.root())?;
        self.create_parents(&to)?;
        let mut subscribed = subscriptions::read(self.root())?;
        let mut moved = false;
        for name in subscribed.iter_mut() {
            if names::is_within(name, &from) {
                *name = format!("{to}{}", &name[from.len()..]);
                moved = true;
            }
        }
        if moved {
            let mut seen = HashSet::new();
            subscribed.retain(|n| seen.insert(n.clone()));
            subscriptions::write(self.root(), &subscribed)?;
        }
        Ok(())
    }

    /// Adds a name to the subscriptions (it need not exist, RFC 3501 §6.3.6).
    pub fn subscribe(&self, name: &str) -> Result<(), StoreError> {
        let name = names::canonical(name)?;
        let _table = self.lock();
        let mut subscribed = subscriptions::read(self.root())?;
        if !subscribed.contains(&name) {
            subscribed.push(name);
            subscriptions::write(self.root(), &subscribed)?;
        }
        Ok(())
    }

    /// Removes a name from the subscriptions (no error when it was not subscribed).
    pub fn unsubscribe(&self, name: &str) -> Result<(), StoreError> {
        let name = names::canonical(name)?;
        let _table = self.lock();
        let mut subscribed = subscriptions::read(self.root())?;
        let before = subscribed.len();
        subscribed.retain(|n| n != &name);
        if subscribed.len() != before {
            subscriptions::write(self.root(), &subscribed)?;
        }
        Ok(())
    }

    /// The folder, shared: every caller gets the same `Arc` while anyone holds it, so all
    /// sessions on all threads share one index. Loading (first open) reads the UID list and
    /// scans the folder.
    pub fn open(&self, name: &str) -> Result<Arc<Mailbox>, StoreError> {
        let name = names::canonical(name)?;
        let mut table = self.lock();
        self.open_locked(&mut table, &name)
    }

    // ----- internals -----

    fn lock(&self) -> OpenTable<'_> {
        self.shared.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_locked(
        &self,
        table: &mut OpenTable<'_>,
        name: &str,
    ) -> Result<Arc<Mailbox>, StoreError> {
        if let Some(mailbox) = table.get(name).and_then(Weak::upgrade)
            && !mailbox.is_gone()
        {
            self.shared.recent.touch(&mailbox);
            return Ok(mailbox);
        }
        let mailbox = Arc::new(Mailbox::load(
            name.to_string(),
            self.dir_of(name),
            self.shared.clone(),
        )?);
        table.retain(|_, w| w.strong_count() > 0);
        table.insert(name.to_string(), Arc::downgrade(&mailbox));
        self.shared.recent.touch(&mailbox);
        Ok(mailbox)
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        names::folder_dir(self.root(), name)
    }

    fn folder_exists(&self, name: &str) -> bool {
        self.dir_of(name).is_dir()
    }

    /// Names of the Maildir++ folders under the root (not INBOX itself).
    fn folders(&self) -> Result<Vec<String>, StoreError> {
        let root = self.root();
        let entries = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(root, e))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = names::from_dir_entry(&file_name) else {
                continue;
            };
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => entry.path().is_dir(),
                _ => false,
            };
            if is_dir {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Creates one folder: `.Name/` with `cur/ new/ tmp/`, Maildir++'s `maildirfolder` marker
    /// and a UID list with a fresh UIDVALIDITY.
    fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.dir_of(name);
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists(name.to_string()));
            }
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        for sub in ["cur", "new", "tmp"] {
            fsutil::ensure_dir(&dir.join(sub))?;
        }
        match fsutil::write_new_file(&dir.join("maildirfolder"), b"", None) {
            Ok(()) => {}
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            }
            Err(e) => return Err(e),
        }
        fsutil::replace_file(
            &dir.join("tmp"),
            &dir.join(uidlist::FILE),
            uidlist::render_header(new_uid_validity(), 1).as_bytes(),
        )?;
        fsutil::fsync_dir(self.root())
    }

    fn create_parents(&self, name: &str) -> Result<(), StoreError> {
        for parent in names::parents(name) {
            if parent != INBOX && !self.folder_exists(parent) {
                match self.create_folder(parent) {
                    Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn rename_inbox(&self, table: &mut OpenTable<'_>, to: &str) -> Result<(), StoreError> {
        if fs::symlink_metadata(self.dir_of(to)).is_ok() {
            return Err(StoreError::AlreadyExists(to.to_string()));
        }
        self.create_parents(to)?;
        self.create_folder(to)?;
        let to_dir = self.dir_of(to);
        // Keyword letters in the moved file names must keep their meaning.
        let keywords_file = self.root().join(keywords::FILE);
        match fs::read(&keywords_file) {
            Ok(bytes) => {
                fsutil::replace_file(&to_dir.join("tmp"), &to_dir.join(keywords::FILE), &bytes)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(keywords_file, e)),
        }
        let inbox = self.open_locked(table, INBOX)?;
        inbox.move_all_to(&to_dir)
    }

    /// First use of the user in this process: the Maildir root, and the default folders for
    /// a new user.
    fn initialize(&self) -> Result<(), StoreError> {
        if self.shared.initialized.load(Ordering::Acquire) {
            return Ok(());
        }
        let _table = self.lock();
        if self.shared.initialized.load(Ordering::Acquire) {
            return Ok(());
        }
        let root = self.root();
        // The usual case, an existing user: two stats.
        if root.join("cur").is_dir() && subscriptions::exists(root) {
            self.shared.initialized.store(true, Ordering::Release);
            return Ok(());
        }
        fsutil::ensure_dir_all(root)?;
        for sub in ["cur", "new", "tmp"] {
            fsutil::ensure_dir(&root.join(sub))?;
        }
        if !subscriptions::exists(root) && self.folders()?.is_empty() {
            let mut subscribed = vec![INBOX.to_string()];
            for special in SpecialUse::ALL {
                match self.create_folder(special.folder_name()) {
                    Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
                subscribed.push(special.folder_name().to_string());
            }
            subscriptions::write(root, &subscribed)?;
            if let Some(parent) = root.parent() {
                fsutil::fsync_dir(parent)?;
            }
        }
        self.shared.initialized.store(true, Ordering::Release);
        Ok(())
    }
}
