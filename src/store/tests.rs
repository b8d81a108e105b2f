//! Tests of the store as a whole, on real directories: folder tree, subscriptions, UIDs across
//! restarts, external Maildir writers, flags, expunge, copy and the Dovecot import.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::flags::{self, FlagMode, Flags};
use super::*;

fn spool() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn root(spool: &Path, user: &str) -> PathBuf {
    spool.join("mail").join(user)
}

fn names(list: &[MailboxInfo]) -> Vec<&str> {
    list.iter().map(|i| i.name.as_str()).collect()
}

fn info<'a>(list: &'a [MailboxInfo], name: &str) -> &'a MailboxInfo {
    list.iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn uids(index: &Index) -> Vec<u32> {
    index.messages.iter().map(|m| m.uid).collect()
}

const SEEN: Flags = Flags {
    system: flags::SEEN,
    keywords: 0,
};
const DELETED: Flags = Flags {
    system: flags::DELETED,
    keywords: 0,
};

// ----- folder tree -----

#[test]
fn new_user_gets_inbox_and_subscribed_special_use_folders() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("alice").unwrap();
    let list = mail.list().unwrap();
    assert_eq!(
        names(&list),
        ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    );
    assert!(
        list.iter()
            .all(|i| i.exists && i.subscribed && !i.has_children)
    );
    assert_eq!(info(&list, "Sent").special_use, Some(SpecialUse::Sent));
    assert_eq!(
        info(&list, "Trash").special_use.map(|s| s.attribute()),
        Some("\\Trash")
    );
    assert_eq!(info(&list, "INBOX").special_use, None);
    let r = root(spool.path(), "alice");
    for dir in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        assert!(r.join(dir).is_dir(), "{dir}");
    }
    assert!(r.join(".Sent/maildirfolder").is_file());
    // A second use does not add them again after the user deleted one.
    mail.delete("Junk").unwrap();
    drop(mail);
    drop(store);
    let store = Store::new(spool.path());
    let list = store.user("alice").unwrap().list().unwrap();
    assert!(!info(&list, "Junk").exists);
}

#[test]
fn invalid_user_names_are_refused() {
    let spool = spool();
    let store = Store::new(spool.path());
    for bad in ["", "..", ".x", "a/b", "nul\0"] {
        assert!(
            matches!(store.user(bad), Err(StoreError::InvalidUser(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn create_makes_parents_and_list_shows_hierarchy() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    mail.create("Work.Projects.2024").unwrap();
    mail.create("Entwürfe").unwrap();
    mail.create("Trailing.").unwrap();
    mail.create("inbox.Sub").unwrap();
    let r = root(spool.path(), "u");
    assert!(r.join(".Work").is_dir());
    assert!(r.join(".Work.Projects").is_dir());
    assert!(r.join(".Work.Projects.2024/cur").is_dir());
    assert!(r.join(".Entw&APw-rfe/cur").is_dir());
    assert!(r.join(".Trailing").is_dir());
    assert!(r.join(".INBOX.Sub").is_dir());
    let list = mail.list().unwrap();
    assert_eq!(
        names(&list),
        [
            "INBOX",
            "INBOX.Sub",
            "Archive",
            "Drafts",
            "Entwürfe",
            "Junk",
            "Sent",
            "Trailing",
            "Trash",
            "Work",
            "Work.Projects",
            "Work.Projects.2024",
        ]
    );
    assert!(info(&list, "INBOX").has_children);
    assert!(info(&list, "Work").has_children);
    assert!(info(&list, "Work.Projects").has_children);
    assert!(!info(&list, "Work.Projects.2024").has_children);
    assert!(!info(&list, "Work").subscribed);

    assert!(matches!(
        mail.create("Work"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        mail.create("INBOX"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        mail.create("iNbOx"),
        Err(StoreError::AlreadyExists(_))
    ));
    for bad in ["../x", "a/b", "a..b", ".hidden", "x\ty", ""] {
        assert!(
            matches!(mail.create(bad), Err(StoreError::InvalidName(_))),
            "{bad:?} accepted"
        );
    }
    // Nothing escaped the user's directory.
    assert_eq!(files_in(&spool.path().join("mail")), ["u"]);
}

#[test]
fn delete_folder_keeps_children_and_refuses_inbox() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    mail.create("Work.Projects").unwrap();
    let work = mail.open("Work").unwrap();
    work.append(b"m\r\n", 0, &[], None).unwrap();
    let old_validity = work.snapshot().uid_validity;

    assert!(matches!(
        mail.delete("INBOX"),
        Err(StoreError::InboxCannotBeDeleted)
    ));
    assert!(matches!(
        mail.delete("inbox"),
        Err(StoreError::InboxCannotBeDeleted)
    ));
    assert!(matches!(
        mail.delete("Nope"),
        Err(StoreError::NoSuchMailbox(_))
    ));

    mail.delete("Work").unwrap();
    let r = root(spool.path(), "u");
    assert!(!r.join(".Work").exists());
    assert!(r.join(".Work.Projects").is_dir());
    assert!(files_in(&r.join("tmp")).is_empty(), "trash left behind");
    let list = mail.list().unwrap();
    let parent = info(&list, "Work");
    assert!(!parent.exists && parent.has_children);
    // A name that is only a parent cannot be deleted.
    assert!(matches!(
        mail.delete("Work"),
        Err(StoreError::HasChildren(_))
    ));
    // The open handle notices.
    assert!(matches!(work.sync(), Err(StoreError::NoSuchMailbox(_))));
    assert!(matches!(
        work.append(b"x", 0, &[], None),
        Err(StoreError::NoSuchMailbox(_))
    ));

    // Created again: a new folder with a new UIDVALIDITY, not the old handle.
    mail.create("Work").unwrap();
    let again = mail.open("Work").unwrap();
    assert!(!Arc::ptr_eq(&work, &again));
    assert_ne!(again.snapshot().uid_validity, old_validity);
    assert!(again.snapshot().messages.is_empty());
}

#[test]
fn rename_moves_children_and_subscriptions() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    mail.create("Work.Projects").unwrap();
    mail.subscribe("Work.Projects").unwrap();
    let projects = mail.open("Work.Projects").unwrap();
    let uid = projects
        .append(b"hello\r\n", flags::SEEN, &[], None)
        .unwrap();
    let validity = projects.snapshot().uid_validity;

    mail.rename("Work", "Job.Old").unwrap();
    let list = mail.list().unwrap();
    assert!(list.iter().all(|i| !i.name.starts_with("Work")), "{list:?}");
    assert!(info(&list, "Job").exists, "missing parent created");
    assert!(info(&list, "Job.Old").exists);
    assert!(info(&list, "Job.Old.Projects").subscribed);
    assert!(matches!(projects.sync(), Err(StoreError::NoSuchMailbox(_))));
    let moved = mail.open("Job.Old.Projects").unwrap();
    let index = moved.snapshot();
    assert_eq!(index.uid_validity, validity);
    assert_eq!(uids(&index), [uid]);
    assert_eq!(moved.read(uid).unwrap(), b"hello\r\n");

    assert!(matches!(
        mail.rename("Job", "Sent"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        mail.rename("Nope", "Other"),
        Err(StoreError::NoSuchMailbox(_))
    ));
    assert!(matches!(
        mail.rename("Sent", "INBOX"),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        mail.rename("Sent", "a/b"),
        Err(StoreError::InvalidName(_))
    ));
}

#[test]
fn rename_inbox_moves_messages_and_leaves_inbox_empty() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    mail.create("INBOX.Child").unwrap();
    let inbox = mail.open("INBOX").unwrap();
    inbox.append(b"one\r\n", 0, &[], None).unwrap();
    inbox
        .append(b"two\r\n", flags::FLAGGED, &["$Label1"], None)
        .unwrap();
    let next_before = inbox.snapshot().uid_next;

    mail.rename("INBOX", "Old Mail").unwrap();
    let index = inbox.sync().unwrap().index;
    assert!(index.messages.is_empty());
    assert_eq!(index.uid_next, next_before, "INBOX keeps counting");
    assert!(
        mail.list()
            .unwrap()
            .iter()
            .any(|i| i.name == "INBOX.Child" && i.exists)
    );

    let old = mail.open("Old Mail").unwrap();
    let index = old.snapshot();
    assert_eq!(index.messages.len(), 2);
    let flagged = index
        .messages
        .iter()
        .find(|m| m.flags.has(flags::FLAGGED))
        .unwrap();
    assert_eq!(old.keywords(), ["$Label1"]);
    assert!(flagged.flags.has_keyword(0));
    assert_eq!(old.read(flagged.uid).unwrap(), b"two\r\n");
}

// ----- subscriptions -----

#[test]
fn subscriptions_round_trip_in_dovecot_format() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    mail.subscribe("Lists.Rust").unwrap();
    mail.subscribe("Entwürfe").unwrap();
    mail.subscribe("Lists.Rust").unwrap();
    mail.unsubscribe("Junk").unwrap();
    mail.unsubscribe("Never subscribed").unwrap();
    let text = fs::read_to_string(root(spool.path(), "u").join("subscriptions")).unwrap();
    assert_eq!(
        text,
        "V\t2\n\nINBOX\nSent\nDrafts\nTrash\nArchive\nLists\tRust\nEntw&APw-rfe\n"
    );
    let list = mail.list().unwrap();
    let rust = info(&list, "Lists.Rust");
    assert!(rust.subscribed && !rust.exists && !rust.has_children);
    assert!(!info(&list, "Junk").subscribed);
    assert!(matches!(
        mail.subscribe("a..b"),
        Err(StoreError::InvalidName(_))
    ));
}

#[test]
fn reads_subscriptions_written_by_dovecot() {
    let spool = spool();
    let r = root(spool.path(), "u");
    fs::create_dir_all(r.join(".Work.Projects/cur")).unwrap();
    fs::write(
        r.join("subscriptions"),
        "V\t2\n\nINBOX\nWork\tProjects\nEntw&APw-rfe\n",
    )
    .unwrap();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let list = mail.list().unwrap();
    // An existing user: no default folders are added.
    assert_eq!(names(&list), ["INBOX", "Entwürfe", "Work", "Work.Projects"]);
    assert!(info(&list, "Work.Projects").subscribed && info(&list, "Work.Projects").exists);
    assert!(info(&list, "Entwürfe").subscribed && !info(&list, "Entwürfe").exists);
    assert!(!info(&list, "Work").exists && info(&list, "Work").has_children);

    // The old one-name-per-line format too.
    fs::write(r.join("subscriptions"), "INBOX\nWork.Projects\n").unwrap();
    let list = mail.list().unwrap();
    assert!(info(&list, "Work.Projects").subscribed);
}

// ----- messages and UIDs -----

#[test]
fn append_assigns_uids_and_sync_is_stable() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let inbox = mail.open("INBOX").unwrap();
    let date = 1_600_000_000;
    assert_eq!(inbox.append(b"one\r\n", 0, &[], Some(date)).unwrap(), 1);
    assert_eq!(inbox.append(b"two\r\n", flags::SEEN, &[], None).unwrap(), 2);
    assert_eq!(inbox.append(b"three\r\n", 0, &["Work"], None).unwrap(), 3);
    let index = inbox.snapshot();
    assert_eq!(uids(&index), [1, 2, 3]);
    assert_eq!(index.uid_next, 4);
    assert_eq!(index.messages[0].size, 5);
    assert_eq!(index.messages[0].internal_date, date);
    assert!(index.messages[0].in_new);
    assert!(!index.messages[1].in_new, "with flags: straight into cur/");
    assert_eq!(index.total_size(), 5 + 5 + 7);
    assert_eq!(index.unseen(), 2);

    let r = root(spool.path(), "u");
    let path = inbox.path_of(1).unwrap();
    assert!(path.starts_with(r.join("new")));
    assert_eq!(
        fs::metadata(&path).unwrap().modified().unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(date as u64)
    );
    assert!(
        inbox
            .path_of(2)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(":2,S")
    );
    assert!(
        inbox
            .path_of(3)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(":2,a")
    );
    assert_eq!(
        fs::read_to_string(r.join("dovecot-keywords")).unwrap(),
        "0 Work\n"
    );
    assert!(files_in(&r.join("tmp")).is_empty());

    // The first sync takes message 1 from new/: \Recent for this caller only.
    let first = inbox.sync().unwrap();
    assert_eq!(first.recent, [1]);
    assert_eq!(uids(&first.index), [1, 2, 3]);
    assert!(!first.index.messages[0].in_new);
    assert!(files_in(&r.join("new")).is_empty());
    let second = inbox.sync().unwrap();
    assert!(second.recent.is_empty());
    assert_eq!(uids(&second.index), [1, 2, 3]);
    assert_eq!(inbox.read(1).unwrap(), b"one\r\n");
    assert_eq!(inbox.read(3).unwrap(), b"three\r\n");
    assert!(matches!(inbox.read(9), Err(StoreError::NoSuchMessage(9))));
}

#[test]
fn uids_and_uidvalidity_survive_a_restart() {
    let spool = spool();
    let (validity, files) = {
        let store = Store::new(spool.path());
        let mail = store.user("u").unwrap();
        let inbox = mail.open("INBOX").unwrap();
        for i in 0..3 {
            inbox
                .append(format!("m{i}\r\n").as_bytes(), 0, &[], None)
                .unwrap();
        }
        inbox.sync().unwrap();
        let index = inbox.snapshot();
        let files: Vec<(u32, PathBuf)> = index
            .messages
            .iter()
            .map(|m| (m.uid, inbox.path_of(m.uid).unwrap()))
            .collect();
        (index.uid_validity, files)
    };
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("inbox").unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(index.uid_validity, validity);
    assert_eq!(index.uid_next, 4);
    for (uid, path) in files {
        assert_eq!(inbox.path_of(uid).unwrap(), path);
    }
    assert_eq!(inbox.append(b"after\r\n", 0, &[], None).unwrap(), 4);
}

#[test]
fn external_deliveries_deletions_and_renames_are_picked_up() {
    let spool = spool();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    inbox.append(b"ours\r\n", flags::SEEN, &[], None).unwrap();
    let r = root(spool.path(), "u");

    // An MTA drops a message into new/ (via tmp/, as Maildir wants).
    fs::write(
        r.join("tmp/1700000000.M1P1.mx"),
        b"Subject: hi\r\n\r\nbody\r\n",
    )
    .unwrap();
    fs::rename(
        r.join("tmp/1700000000.M1P1.mx"),
        r.join("new/1700000000.M1P1.mx"),
    )
    .unwrap();
    let sync = inbox.sync().unwrap();
    assert_eq!(uids(&sync.index), [1, 2]);
    assert_eq!(sync.recent, [2]);
    assert_eq!(sync.index.messages[1].size, 21);
    assert!(r.join("cur/1700000000.M1P1.mx:2,").is_file());

    // Another program sets flags by renaming.
    fs::rename(
        r.join("cur/1700000000.M1P1.mx:2,"),
        r.join("cur/1700000000.M1P1.mx:2,FS"),
    )
    .unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(index.messages[1].flags.system, flags::FLAGGED | flags::SEEN);
    assert_eq!(inbox.read(2).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");

    // ...and deletes one.
    fs::remove_file(inbox.path_of(1).unwrap()).unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(uids(&index), [2]);
    assert_eq!(index.uid_next, 3);

    // Renamed behind our back, then read: found after one rescan.
    fs::rename(
        r.join("cur/1700000000.M1P1.mx:2,FS"),
        r.join("cur/1700000000.M1P1.mx:2,S"),
    )
    .unwrap();
    assert_eq!(inbox.read(2).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(inbox.snapshot().messages[0].flags, SEEN);
}

#[test]
fn unchanged_directories_skip_the_readdir() {
    let spool = spool();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    inbox.append(b"x\r\n", flags::SEEN, &[], None).unwrap();
    let r = root(spool.path(), "u");
    let past = SystemTime::now() - Duration::from_secs(3600);
    let set_time = |dir: &str, t: SystemTime| {
        fs::File::open(r.join(dir))
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set_time("new", past);
    set_time("cur", past);
    let before = inbox.sync().unwrap().index;
    // A file appears but the directory time is put back: the scan trusts the time and skips
    // reading the directory, which proves it reads nothing when nothing changed.
    fs::write(r.join("cur/1.M1P1.h:2,"), b"y").unwrap();
    set_time("cur", past);
    let again = inbox.sync().unwrap().index;
    assert!(
        Arc::ptr_eq(&before, &again),
        "nothing read, nothing published"
    );
    // A real change moves the directory time, so it is seen.
    set_time("cur", past + Duration::from_secs(1));
    let after = inbox.sync().unwrap().index;
    assert_eq!(uids(&after), [1, 2]);
    assert!(after.generation > again.generation);
}

#[test]
fn concurrent_appends_and_syncs_get_distinct_uids() {
    let spool = spool();
    let store = Arc::new(Store::new(spool.path()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let inbox = store.user("u").unwrap().open("INBOX").unwrap();
                let mut mine = Vec::new();
                for i in 0..25 {
                    let body = format!("thread {t} message {i}\r\n");
                    mine.push((inbox.append(body.as_bytes(), 0, &[], None).unwrap(), body));
                    inbox.sync().unwrap();
                }
                mine
            })
        })
        .collect();
    let all: Vec<(u32, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(uids(&index), (1..=100).collect::<Vec<_>>());
    for (uid, body) in all {
        assert_eq!(inbox.read(uid).unwrap(), body.as_bytes());
    }
}

#[test]
fn set_flags_renames_files_with_letters_in_order() {
    let spool = spool();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    let r = root(spool.path(), "u");
    let a = inbox.append(b"a\r\n", 0, &[], None).unwrap();
    let b = inbox.append(b"b\r\n", flags::SEEN, &[], None).unwrap();
    let work = inbox.keyword_index("$Work", true).unwrap().unwrap();
    let todo = inbox.keyword_index("Todo", true).unwrap().unwrap();
    assert_eq!((work, todo), (0, 1));
    assert_eq!(inbox.keyword_index("$work", false).unwrap(), Some(0));
    assert_eq!(inbox.keyword_index("Unknown", false).unwrap(), None);
    assert_eq!(inbox.keywords(), ["$Work", "Todo"]);
    assert_eq!(
        fs::read_to_string(r.join("dovecot-keywords")).unwrap(),
        "0 $Work\n1 Todo\n"
    );

    let given = Flags {
        system: flags::FLAGGED | flags::DELETED,
        keywords: 1 << todo,
    };
    let result = inbox.set_flags(&[b, a, 99], FlagMode::Add, given).unwrap();
    assert_eq!(
        result,
        [
            (
                a,
                Flags {
                    system: flags::FLAGGED | flags::DELETED,
                    keywords: 2
                }
            ),
            (
                b,
                Flags {
                    system: flags::FLAGGED | flags::DELETED | flags::SEEN,
                    keywords: 2
                }
            ),
        ]
    );
    let name = |uid| {
        inbox
            .path_of(uid)
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert!(name(a).ends_with(":2,FTb"), "{}", name(a));
    assert!(name(b).ends_with(":2,FSTb"), "{}", name(b));
    assert!(
        files_in(&r.join("new")).is_empty(),
        "flag change moves to cur/"
    );

    inbox.set_flags(&[b], FlagMode::Remove, DELETED).unwrap();
    assert!(name(b).ends_with(":2,FSb"));
    inbox
        .set_flags(
            &[b],
            FlagMode::Replace,
            Flags {
                system: 0,
                keywords: 1 << work,
            },
        )
        .unwrap();
    assert!(name(b).ends_with(":2,a"));
    assert_eq!(
        inbox.snapshot().messages[1].flags,
        Flags {
            system: 0,
            keywords: 1
        }
    );

    // Unknown letters are kept; a file renamed elsewhere is found again.
    let path_b = inbox.path_of(b).unwrap();
    let base = name(b).split(':').next().unwrap().to_string();
    fs::rename(&path_b, r.join("cur").join(format!("{base}:2,Pa"))).unwrap();
    let result = inbox.set_flags(&[b], FlagMode::Add, SEEN).unwrap();
    assert_eq!(
        result,
        [(
            b,
            Flags {
                system: flags::SEEN,
                keywords: 1
            }
        )]
    );
    assert!(name(b).ends_with(":2,PSa"), "{}", name(b));
}

#[test]
fn keywords_stop_at_26() {
    let spool = spool();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    for i in 0..26 {
        assert_eq!(
            inbox.keyword_index(&format!("k{i}"), true).unwrap(),
            Some(i)
        );
    }
    assert!(matches!(
        inbox.keyword_index("k26", true),
        Err(StoreError::TooManyKeywords)
    ));
    assert!(matches!(
        inbox.append(b"x", 0, &["k26"], None),
        Err(StoreError::TooManyKeywords)
    ));
    assert!(matches!(
        inbox.append(b"x", 0, &["bad keyword"], None),
        Err(StoreError::InvalidKeyword(_))
    ));
    let r = root(spool.path(), "u");
    assert!(
        files_in(&r.join("tmp")).is_empty(),
        "failed appends leave nothing"
    );
    assert!(files_in(&r.join("new")).is_empty() && files_in(&r.join("cur")).is_empty());
    assert!(inbox.snapshot().messages.is_empty());
}

#[test]
fn expunge_removes_only_deleted_and_only_the_given() {
    let spool = spool();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    for i in 0..5 {
        inbox
            .append(format!("{i}\r\n").as_bytes(), 0, &[], None)
            .unwrap();
    }
    inbox.set_flags(&[2, 3, 5], FlagMode::Add, DELETED).unwrap();
    assert_eq!(inbox.expunge(Some(&[5, 1, 2])).unwrap(), [2, 5]);
    assert_eq!(uids(&inbox.snapshot()), [1, 3, 4]);
    assert_eq!(inbox.expunge(None).unwrap(), [3]);
    assert_eq!(uids(&inbox.snapshot()), [1, 4]);
    assert_eq!(inbox.expunge(None).unwrap(), Vec::<u32>::new());
    let r = root(spool.path(), "u");
    assert_eq!(
        files_in(&r.join("cur")).len() + files_in(&r.join("new")).len(),
        2
    );
}

#[test]
fn uid_next_never_decreases_after_expunge_and_restart() {
    let spool = spool();
    {
        let store = Store::new(spool.path());
        let inbox = store.user("u").unwrap().open("INBOX").unwrap();
        for _ in 0..3 {
            inbox.append(b"x\r\n", flags::DELETED, &[], None).unwrap();
        }
        assert_eq!(inbox.expunge(None).unwrap(), [1, 2, 3]);
        assert_eq!(inbox.snapshot().uid_next, 4);
    }
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    assert_eq!(inbox.snapshot().uid_next, 4);
    assert!(inbox.snapshot().messages.is_empty());
    assert_eq!(inbox.append(b"y\r\n", 0, &[], None).unwrap(), 4);
}

#[test]
fn copy_keeps_flags_keywords_by_name_and_dates() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let inbox = mail.open("INBOX").unwrap();
    let archive = mail.open("Archive").unwrap();
    // Different keyword order in the two folders.
    archive.keyword_index("Other", true).unwrap();
    let a = inbox
        .append(
            b"a\r\n",
            flags::SEEN | flags::ANSWERED,
            &["Important"],
            Some(1_500_000_000),
        )
        .unwrap();
    let b = inbox.append(b"b\r\n", 0, &[], Some(1_500_000_100)).unwrap();
    archive.append(b"existing\r\n", 0, &[], None).unwrap();

    let pairs = inbox.copy_to(&[b, a, 77], &archive).unwrap();
    assert_eq!(pairs, [(a, 2), (b, 3)]);
    let index = archive.snapshot();
    assert_eq!(uids(&index), [1, 2, 3]);
    assert_eq!(archive.keywords(), ["Other", "Important"]);
    let copied = &index.messages[1];
    assert_eq!(
        copied.flags,
        Flags {
            system: flags::SEEN | flags::ANSWERED,
            keywords: 1 << 1
        }
    );
    assert_eq!(copied.internal_date, 1_500_000_000);
    assert_eq!(index.messages[2].internal_date, 1_500_000_100);
    assert_eq!(archive.read(2).unwrap(), b"a\r\n");
    assert_eq!(archive.read(3).unwrap(), b"b\r\n");
    assert!(
        archive
            .path_of(2)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(":2,RSb")
    );
    // The source is untouched.
    assert_eq!(uids(&inbox.snapshot()), [a, b]);
    assert_eq!(inbox.read(a).unwrap(), b"a\r\n");

    // Copy into the same folder works too.
    let pairs = archive.copy_to(&[1], &archive).unwrap();
    assert_eq!(pairs, [(1, 4)]);
    assert_eq!(archive.read(4).unwrap(), b"existing\r\n");
}

#[test]
fn open_shares_one_mailbox() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let one = mail.open("INBOX").unwrap();
    let two = store.user("u").unwrap().open("inbox").unwrap();
    assert!(Arc::ptr_eq(&one, &two));
    let other_thread = {
        let mail = mail.clone();
        std::thread::spawn(move || mail.open("INBOX").unwrap())
            .join()
            .unwrap()
    };
    assert!(Arc::ptr_eq(&one, &other_thread));
    assert!(matches!(
        mail.open("Nope"),
        Err(StoreError::NoSuchMailbox(_))
    ));
    // One session's change is every session's snapshot.
    one.append(b"x", 0, &[], None).unwrap();
    assert_eq!(two.snapshot().messages.len(), 1);
}

#[test]
fn imports_dovecot_uidlist_and_keywords() {
    let spool = spool();
    let r = root(spool.path(), "u");
    let folder = r.join(".Work");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(folder.join(sub)).unwrap();
    }
    fs::create_dir_all(r.join("cur")).unwrap();
    fs::write(
        folder.join("dovecot-uidlist"),
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
         25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
         25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n\
         25020 :1276540000.M1P1.kurkku\n",
    )
    .unwrap();
    fs::write(folder.join("dovecot-keywords"), "0 $Forwarded\n1 Junk\n").unwrap();
    fs::write(
        folder.join("cur/1276528487.M364837P9451.kurkku,S=1355,W=1394:2,Sb"),
        b"a",
    )
    .unwrap();
    fs::write(
        folder.join("cur/1276533073.M242911P3632.kurkku:2,Fa"),
        b"bb",
    )
    .unwrap();
    // 25020 is gone; a file Dovecot never saw arrived meanwhile.
    fs::write(folder.join("new/1276550000.M2P2.kurkku"), b"ccc").unwrap();

    let store = Store::new(spool.path());
    let work = store.user("u").unwrap().open("Work").unwrap();
    let sync = work.sync().unwrap();
    let index = sync.index;
    assert_eq!(index.uid_validity, 1275660208);
    assert_eq!(uids(&index), [25006, 25017, 25022]);
    assert_eq!(index.uid_next, 25023);
    assert_eq!(sync.recent, [25022]);
    assert_eq!(work.keywords(), ["$Forwarded", "Junk"]);
    assert_eq!(
        index.messages[0].flags,
        Flags {
            system: flags::SEEN,
            keywords: 0b10
        }
    );
    assert_eq!(index.messages[0].size, 1355, "size from ,S=");
    assert_eq!(
        index.messages[1].flags,
        Flags {
            system: flags::FLAGGED,
            keywords: 0b01
        }
    );
    assert_eq!(index.messages[1].size, 2, "size from stat");
    assert_eq!(work.read(25017).unwrap(), b"bb");
    assert!(folder.join("hato-uidlist").is_file());
    assert!(
        folder.join("dovecot-uidlist").is_file(),
        "Dovecot's file is left alone"
    );
    drop(work);
    drop(store);

    // After a restart hato's own file is used, with the same UIDs.
    let store = Store::new(spool.path());
    let work = store.user("u").unwrap().open("Work").unwrap();
    let index = work.snapshot();
    assert_eq!(index.uid_validity, 1275660208);
    assert_eq!(uids(&index), [25006, 25017, 25022]);
    assert_eq!(work.append(b"d", 0, &["Junk"], None).unwrap(), 25023);
}

#[test]
fn torn_uidlist_append_is_recovered() {
    let spool = spool();
    {
        let store = Store::new(spool.path());
        let inbox = store.user("u").unwrap().open("INBOX").unwrap();
        inbox.append(b"a", flags::SEEN, &[], None).unwrap();
    }
    let r = root(spool.path(), "u");
    let list = r.join("hato-uidlist");
    let mut text = fs::read_to_string(&list).unwrap();
    text.push_str("2 5 170"); // a crash in the middle of an append
    fs::write(&list, text).unwrap();
    let store = Store::new(spool.path());
    let inbox = store.user("u").unwrap().open("INBOX").unwrap();
    assert_eq!(uids(&inbox.snapshot()), [1]);
    assert_eq!(inbox.append(b"b", flags::SEEN, &[], None).unwrap(), 2);
    let text = fs::read_to_string(&list).unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn corrupt_uidlist_is_reported_not_replaced() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    fs::write(
        root(spool.path(), "u").join(".Sent/hato-uidlist"),
        "garbage\n",
    )
    .unwrap();
    assert!(matches!(mail.open("Sent"), Err(StoreError::Corrupt { .. })));
}

#[test]
fn sync_of_2000_messages_reads_names_only() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let cur = root(spool.path(), "u").join(".Archive/cur");
    for i in 0..2000 {
        // Dovecot-style names with the size: these need no stat for it.
        fs::write(
            cur.join(format!("{}.M{i}P1.host,S=100:2,S", 1_600_000_000 + i)),
            b"",
        )
        .unwrap();
    }
    let archive = mail.open("Archive").unwrap();
    let index = archive.sync().unwrap().index;
    assert_eq!(index.messages.len(), 2000);
    assert_eq!(index.messages[1999].uid, 2000);
    assert_eq!(index.total_size(), 200_000);
    assert_eq!(index.unseen(), 0);
    // In name (= arrival) order.
    assert!(index.messages[0].base().starts_with("1600000000."));
    assert!(index.messages[1999].base().starts_with("1600001999."));
    drop(archive);
    let again = mail.open("Archive").unwrap();
    assert_eq!(
        uids(&again.sync().unwrap().index),
        (1..=2000).collect::<Vec<_>>()
    );
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<UserMail>();
    check::<Mailbox>();
    check::<Index>();
    check::<StoreError>();
}

#[test]
fn interrupted_delete_is_finished_when_inbox_opens() {
    let spool = spool();
    let store = Store::new(spool.path());
    let mail = store.user("u").unwrap();
    let leftover = root(spool.path(), "u").join("tmp/hato-deleted.123.M1P1.h");
    fs::create_dir_all(leftover.join("cur")).unwrap();
    fs::write(leftover.join("cur/msg"), b"x").unwrap();
    mail.open("INBOX").unwrap();
    assert!(!leftover.exists());
}

#[test]
fn response_codes() {
    assert_eq!(
        StoreError::NoSuchMailbox("x".into()).response_code(),
        "NONEXISTENT"
    );
    assert_eq!(
        StoreError::AlreadyExists("x".into()).response_code(),
        "ALREADYEXISTS"
    );
    assert_eq!(
        StoreError::InvalidName("x".into()).response_code(),
        "CANNOT"
    );
    assert_eq!(StoreError::TooManyKeywords.response_code(), "LIMIT");
    let full = StoreError::io("/x", std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert_eq!(full.response_code(), "OVERQUOTA");
    let other = StoreError::io("/x", std::io::Error::from_raw_os_error(libc::EIO));
    assert_eq!(other.response_code(), "SERVERBUG");
}
