//! Tests of mod-sequences and remembered expunges on real folders: what changes them, what
//! survives a restart, and what a crash or another program leaves behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::flags::{self, FlagMode, Flags};
use super::modseq::{self, Limits, TEST_LIMITS};
use super::*;

const SEEN: Flags = Flags {
    system: flags::SEEN,
    keywords: 0,
};
const FLAGGED: Flags = Flags {
    system: flags::FLAGGED,
    keywords: 0,
};
const DELETED: Flags = Flags {
    system: flags::DELETED,
    keywords: 0,
};

fn user_root(spool: &Path) -> PathBuf {
    spool.join("mail").join("u")
}

fn open(spool: &Path, folder: &str) -> (Store, Arc<Mailbox>) {
    let store = Store::new(spool);
    let mailbox = store.user("u").unwrap().open(folder).unwrap();
    (store, mailbox)
}

/// `(uid, modseq)` of every message.
fn modseqs(index: &Index) -> Vec<(u32, u64)> {
    index.messages.iter().map(|m| (m.uid, m.modseq)).collect()
}

fn modseq_of(mailbox: &Mailbox, uid: u32) -> u64 {
    let index = mailbox.snapshot();
    index.messages[index.position(uid).unwrap()].modseq
}

fn log_text(dir: &Path) -> String {
    fs::read_to_string(dir.join(modseq::FILE)).unwrap()
}

/// Sets small bounds for folders loaded by this test's thread.
fn small_limits(vanished_kept: usize, compact_min_lines: usize) {
    TEST_LIMITS.with(|l| {
        l.set(Some(Limits {
            vanished_kept,
            compact_min_lines,
        }))
    });
}

#[test]
fn new_folder_starts_at_one_and_each_change_takes_the_next() {
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    let index = inbox.snapshot();
    assert_eq!(index.highest_modseq, 1);
    assert_eq!(index.vanished.floor(), 1);
    assert_eq!(index.vanished_since(1), Ok(vec![]));

    let a = inbox.append(b"a\r\n", 0, &[], None).unwrap();
    let b = inbox.append(b"b\r\n", 0, &[], None).unwrap();
    let c = inbox.append(b"c\r\n", 0, &[], None).unwrap();
    assert_eq!(modseqs(&inbox.snapshot()), [(a, 2), (b, 3), (c, 4)]);
    assert_eq!(inbox.snapshot().highest_modseq, 4);

    // Only the changed message moves.
    inbox.set_flags(&[b], FlagMode::Add, SEEN).unwrap();
    assert_eq!(modseqs(&inbox.snapshot()), [(a, 2), (b, 5), (c, 4)]);
    // A store that changes nothing takes no mod-sequence (and publishes nothing).
    let before = inbox.snapshot();
    inbox.set_flags(&[b], FlagMode::Add, SEEN).unwrap();
    assert!(Arc::ptr_eq(&before, &inbox.snapshot()));
    // One mod-sequence per publish, shared by the messages it changed.
    inbox.set_flags(&[a, c], FlagMode::Add, FLAGGED).unwrap();
    assert_eq!(modseqs(&inbox.snapshot()), [(a, 6), (b, 5), (c, 6)]);
    // A new keyword is a new generation (FLAGS changed) but no message changed.
    let generation = inbox.snapshot().generation;
    inbox.keyword_index("$Work", true).unwrap();
    assert!(inbox.snapshot().generation > generation);
    assert_eq!(inbox.snapshot().highest_modseq, 6);
    // A sync that finds nothing new changes nothing.
    inbox.sync().unwrap();
    assert_eq!(inbox.snapshot().highest_modseq, 6);

    let changed: Vec<u32> = inbox.snapshot().changed_since(5).map(|m| m.uid).collect();
    assert_eq!(changed, [a, c]);
    assert_eq!(inbox.snapshot().changed_since(0).count(), 3);

    // An expunge takes one too, and is remembered.
    inbox.set_flags(&[a], FlagMode::Add, DELETED).unwrap();
    assert_eq!(inbox.expunge(None).unwrap(), [a]);
    let index = inbox.snapshot();
    assert_eq!(index.highest_modseq, 8);
    assert_eq!(index.vanished_since(7), Ok(vec![a]));
    assert_eq!(index.vanished_since(1), Ok(vec![a]));
    assert_eq!(index.vanished_since(8), Ok(vec![]));
    // From another history (above HIGHESTMODSEQ), or below the floor: not known.
    assert!(index.vanished_since(9).is_err());
    assert!(index.vanished_since(0).is_err());
    assert_eq!(index.absent_uids(1, 10), [(1, 1), (4, 10)]);
}

#[test]
fn delivery_by_another_program_gets_a_mod_sequence() {
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    inbox.append(b"a\r\n", 0, &[], None).unwrap();
    let r = user_root(spool.path());
    fs::write(r.join("new/1700000000.M1P1.mx"), b"x").unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(modseqs(&index), [(1, 2), (2, 3)]);
    // Taken from new/ to cur/ by that sync: not a change of the message.
    assert_eq!(inbox.sync().unwrap().index.highest_modseq, 3);
    // Flags changed by another program's rename, and a file deleted behind our back.
    fs::rename(
        r.join("cur/1700000000.M1P1.mx:2,"),
        r.join("cur/1700000000.M1P1.mx:2,S"),
    )
    .unwrap();
    fs::remove_file(inbox.path_of(1).unwrap()).unwrap();
    let index = inbox.sync().unwrap().index;
    assert_eq!(modseqs(&index), [(2, 4)]);
    assert_eq!(index.vanished_since(3), Ok(vec![1]));
}

#[test]
fn highest_modseq_survives_a_restart_and_never_decreases() {
    let spool = tempfile::tempdir().unwrap();
    let (before, highest) = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        for i in 0..5 {
            inbox
                .append(format!("{i}\r\n").as_bytes(), 0, &[], None)
                .unwrap();
        }
        inbox.set_flags(&[2, 4], FlagMode::Add, SEEN).unwrap();
        inbox.set_flags(&[3], FlagMode::Add, DELETED).unwrap();
        inbox.expunge(None).unwrap();
        let index = inbox.snapshot();
        (modseqs(&index), index.highest_modseq)
    };
    let dir = user_root(spool.path());
    let log = log_text(&dir);
    let (after, reopened) = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        let index = inbox.snapshot();
        assert_eq!(
            modseqs(&index),
            before,
            "each message keeps its mod-sequence"
        );
        assert!(index.highest_modseq >= highest);
        assert_eq!(index.vanished_since(highest - 2), Ok(vec![3]));
        (modseqs(&index), index.highest_modseq)
    };
    assert_eq!(log_text(&dir), log, "a clean log is not rewritten at load");
    // Opening again without changes: nothing moves.
    let (_store, inbox) = open(spool.path(), "INBOX");
    assert_eq!(modseqs(&inbox.snapshot()), after);
    assert_eq!(inbox.snapshot().highest_modseq, reopened);
    // The next change is above anything handed out before.
    inbox.set_flags(&[1], FlagMode::Add, SEEN).unwrap();
    assert!(modseq_of(&inbox, 1) > reopened);
    assert_eq!(inbox.snapshot().highest_modseq, modseq_of(&inbox, 1));
}

#[test]
fn a_lost_log_tail_gives_the_changes_it_held_fresh_mod_sequences() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    let highest = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        for _ in 0..3 {
            inbox.append(b"m\r\n", 0, &[], None).unwrap();
        }
        inbox.set_flags(&[2], FlagMode::Add, SEEN).unwrap();
        inbox.set_flags(&[3], FlagMode::Add, DELETED).unwrap();
        inbox.expunge(Some(&[3])).unwrap();
        inbox.snapshot().highest_modseq
    };
    // A power loss took the last three lines: the flag changes of 2 and 3 and the expunge.
    let text = log_text(&dir);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[lines.len() - 1], format!("{highest} 3 x"));
    let kept = lines[..lines.len() - 3].join("\n") + "\n";
    fs::write(dir.join(modseq::FILE), kept).unwrap();

    let (_store, inbox) = open(spool.path(), "INBOX");
    let index = inbox.snapshot();
    // Message 1 kept its logged mod-sequence; 2 (seen on disk, not in the log) got a fresh
    // one above everything handed out; 3 (gone, the log thought it present) is expunged then.
    assert_eq!(modseq_of(&inbox, 1), 2);
    let fresh = modseq_of(&inbox, 2);
    assert!(fresh > highest, "{fresh} > {highest}");
    assert_eq!(index.highest_modseq, fresh);
    assert_eq!(index.vanished_since(highest), Ok(vec![3]));
    assert_eq!(index.changed_since(highest).count(), 1);
}

#[test]
fn a_rename_by_another_program_between_runs_is_a_change() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    let (highest, path) = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        inbox.append(b"a\r\n", flags::SEEN, &[], None).unwrap();
        inbox.append(b"b\r\n", flags::SEEN, &[], None).unwrap();
        (inbox.snapshot().highest_modseq, inbox.path_of(2).unwrap())
    };
    let renamed = path.to_str().unwrap().replace(":2,S", ":2,FS");
    fs::rename(&path, &renamed).unwrap();
    // Another program deletes one and delivers one too.
    fs::write(dir.join("new/1700000000.M9P9.mx"), b"new").unwrap();

    let (_store, inbox) = open(spool.path(), "INBOX");
    let index = inbox.snapshot();
    assert_eq!(modseq_of(&inbox, 1), 2, "unchanged");
    assert!(modseq_of(&inbox, 2) > highest);
    assert_eq!(modseq_of(&inbox, 3), modseq_of(&inbox, 2), "one publish");
    assert_eq!(index.messages[1].flags.system, flags::SEEN | flags::FLAGGED);
    // What was found is logged: the next start agrees without new numbers.
    let found = modseqs(&index);
    drop((_store, inbox));
    let (_store, inbox) = open(spool.path(), "INBOX");
    assert_eq!(modseqs(&inbox.snapshot()), found);
}

#[test]
fn a_torn_last_line_is_ignored_and_never_glued_to() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    {
        let (_store, inbox) = open(spool.path(), "INBOX");
        inbox.append(b"a\r\n", 0, &[], None).unwrap();
        inbox.append(b"b\r\n", 0, &[], None).unwrap();
    }
    let mut text = log_text(&dir);
    text.push_str("12"); // a crash in the middle of writing "12 1 =S"
    fs::write(dir.join(modseq::FILE), &text).unwrap();

    let (_store, inbox) = open(spool.path(), "INBOX");
    assert_eq!(modseqs(&inbox.snapshot()), [(1, 2), (2, 3)]);
    inbox.set_flags(&[1], FlagMode::Add, SEEN).unwrap();
    // The file was rewritten before the append: every line reads back.
    let replay = modseq::parse(&log_text(&dir)).unwrap();
    assert!(replay.clean, "{}", log_text(&dir));
    assert_eq!(replay.live[&1], (modseq_of(&inbox, 1), SEEN));
    assert!(modseq_of(&inbox, 1) > 3);
}

#[test]
fn expunges_are_remembered_across_restarts() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path()).join(".Archive");
    let (first, second, six) = {
        let (_store, archive) = open(spool.path(), "Archive");
        for _ in 0..6 {
            archive.append(b"x\r\n", flags::DELETED, &[], None).unwrap();
        }
        archive.expunge(Some(&[2, 4])).unwrap();
        let first = archive.snapshot().highest_modseq;
        archive.expunge(Some(&[5])).unwrap();
        let six = archive.path_of(6).unwrap();
        (first, archive.snapshot().highest_modseq, six)
    };
    assert!(six.starts_with(&dir));
    // Deleted by another program while hato was down.
    fs::remove_file(six).unwrap();
    let (_store, archive) = open(spool.path(), "Archive");
    let index = archive.snapshot();
    assert!(index.highest_modseq > second);
    assert_eq!(index.vanished_since(first - 1), Ok(vec![2, 4, 5, 6]));
    assert_eq!(index.vanished_since(first), Ok(vec![5, 6]));
    assert_eq!(index.vanished_since(second), Ok(vec![6]));
    assert_eq!(index.vanished.len(), 4);
    assert_eq!(index.absent_uids(1, 7), [(2, 2), (4, 7)]);
}

#[test]
fn remembered_expunges_are_bounded_with_a_floor() {
    small_limits(64, 1_000_000); // chunks of one entry
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    for _ in 0..100 {
        inbox.append(b"x\r\n", flags::DELETED, &[], None).unwrap();
    }
    for uid in 1..=100 {
        inbox.expunge(Some(&[uid])).unwrap();
    }
    let index = inbox.snapshot();
    assert_eq!(index.vanished.len(), 64);
    // Appends took 2..=101, expunges 102..=201: the first 36 expunges are forgotten.
    let floor = index.vanished.floor();
    assert_eq!(floor, 101 + 36);
    assert_eq!(
        index.vanished_since(floor),
        Ok((37..=100).collect::<Vec<_>>())
    );
    assert_eq!(index.vanished_since(floor - 1), Err(Incomplete { floor }));
    // What the protocol side answers instead: every UID of the client's range not present.
    assert_eq!(index.absent_uids(1, 100), [(1, 100)]);
    drop((_store, inbox));

    let (_store, inbox) = open(spool.path(), "INBOX");
    let again = inbox.snapshot();
    assert_eq!(again.vanished.floor(), floor);
    assert_eq!(again.vanished_since(floor), index.vanished_since(floor));
}

#[test]
fn compaction_keeps_everything() {
    small_limits(1000, 20);
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    let (state, vanished, highest) = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        for _ in 0..5 {
            inbox.append(b"x\r\n", 0, &["Work"], None).unwrap();
        }
        inbox.set_flags(&[5], FlagMode::Add, DELETED).unwrap();
        inbox.expunge(None).unwrap();
        for round in 0..40 {
            let mode = if round % 2 == 0 {
                FlagMode::Add
            } else {
                FlagMode::Remove
            };
            inbox.set_flags(&[1 + round % 3], mode, SEEN).unwrap();
            // Compacted whenever past 20 lines and 4 × (4 messages + 1 expunge).
            assert!(log_text(&dir).lines().count() <= 24);
        }
        let index = inbox.snapshot();
        let state: Vec<(u32, u64, Flags)> = index
            .messages
            .iter()
            .map(|m| (m.uid, m.modseq, m.flags))
            .collect();
        (state, index.vanished_since(1), index.highest_modseq)
    };
    let replay = modseq::parse(&log_text(&dir)).unwrap();
    assert!(replay.clean);
    assert!(replay.reserved >= highest);
    let (_store, inbox) = open(spool.path(), "INBOX");
    let index = inbox.snapshot();
    let reloaded: Vec<(u32, u64, Flags)> = index
        .messages
        .iter()
        .map(|m| (m.uid, m.modseq, m.flags))
        .collect();
    assert_eq!(reloaded, state);
    assert_eq!(index.vanished_since(1), vanished);
    assert_eq!(vanished, Ok(vec![5]));
    assert!(index.highest_modseq >= highest);
}

#[test]
fn a_new_uidvalidity_starts_the_mod_sequences_anew() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    let highest = {
        let (_store, inbox) = open(spool.path(), "INBOX");
        inbox.append(b"a\r\n", flags::DELETED, &[], None).unwrap();
        inbox.append(b"b\r\n", 0, &[], None).unwrap();
        inbox.expunge(None).unwrap();
        inbox.snapshot().highest_modseq
    };
    // The UID list is made again with another UIDVALIDITY (as after a rebuild).
    let list = fs::read_to_string(dir.join("hato-uidlist")).unwrap();
    let (header, rest) = list.split_once('\n').unwrap();
    let fields: Vec<String> = header
        .split(' ')
        .map(|f| {
            if f.starts_with('V') {
                "V12345".to_string()
            } else {
                f.to_string()
            }
        })
        .collect();
    fs::write(
        dir.join("hato-uidlist"),
        format!("{}\n{rest}", fields.join(" ")),
    )
    .unwrap();

    let (_store, inbox) = open(spool.path(), "INBOX");
    let index = inbox.snapshot();
    assert_eq!(index.uid_validity, 12345);
    assert!(index.highest_modseq > highest);
    assert_eq!(modseqs(&index), [(2, index.highest_modseq)]);
    assert_eq!(index.vanished.floor(), index.highest_modseq);
    assert!(index.vanished.is_empty());
    assert!(log_text(&dir).starts_with("hato-modseq 1 V12345\n"));
}

#[test]
fn an_unreadable_log_is_rebuilt() {
    let spool = tempfile::tempdir().unwrap();
    let dir = user_root(spool.path());
    {
        let (_store, inbox) = open(spool.path(), "INBOX");
        inbox.append(b"a\r\n", flags::SEEN, &[], None).unwrap();
    }
    fs::write(dir.join(modseq::FILE), "garbage\n").unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    assert_eq!(modseqs(&inbox.snapshot()), [(1, 1)]);
    assert!(modseq::parse(&log_text(&dir)).unwrap().clean);
}

#[test]
fn a_folder_imported_from_dovecot_starts_at_one() {
    let spool = tempfile::tempdir().unwrap();
    let r = user_root(spool.path());
    let folder = r.join(".Work");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(folder.join(sub)).unwrap();
    }
    fs::create_dir_all(r.join("cur")).unwrap();
    fs::write(
        folder.join("dovecot-uidlist"),
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
         25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
         25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n",
    )
    .unwrap();
    fs::write(
        folder.join("cur/1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S"),
        b"a",
    )
    .unwrap();
    fs::write(folder.join("cur/1276533073.M242911P3632.kurkku:2,F"), b"bb").unwrap();
    fs::write(folder.join("new/1276550000.M2P2.kurkku"), b"ccc").unwrap();

    let (_store, work) = open(spool.path(), "Work");
    let index = work.snapshot();
    assert_eq!(modseqs(&index), [(25006, 1), (25017, 1), (25022, 1)]);
    assert_eq!(index.highest_modseq, 1);
    assert_eq!(index.vanished.floor(), 1);
    assert!(folder.join(modseq::FILE).is_file());
    assert!(
        fs::read_dir(&folder).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("dovecot.index")),
        "no Dovecot file is written"
    );
    work.set_flags(&[25017], FlagMode::Add, SEEN).unwrap();
    assert_eq!(modseq_of(&work, 25017), 2);
    drop((_store, work));
    // The log is ours from now on: the import does not start over.
    let (_store, work) = open(spool.path(), "Work");
    assert_eq!(
        modseqs(&work.snapshot()),
        [(25006, 1), (25017, 2), (25022, 1)]
    );
}

#[test]
fn unchanged_since_refuses_modified_messages() {
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    let a = inbox.append(b"a\r\n", 0, &[], None).unwrap();
    let b = inbox.append(b"b\r\n", 0, &[], None).unwrap();
    let c = inbox.append(b"c\r\n", flags::FLAGGED, &[], None).unwrap();
    let seen_at = inbox.snapshot().highest_modseq; // what the client saw
    inbox.set_flags(&[b], FlagMode::Add, SEEN).unwrap(); // another session's change

    let done = inbox
        .store_flags(&[a, b, c, 99], FlagMode::Add, FLAGGED, Some(seen_at))
        .unwrap();
    let now = inbox.snapshot().highest_modseq;
    assert_eq!(done.modified, [b]);
    assert_eq!(
        done.stored,
        [
            StoredFlags {
                uid: a,
                flags: FLAGGED,
                modseq: now
            },
            // Already flagged: unchanged, keeps its mod-sequence.
            StoredFlags {
                uid: c,
                flags: FLAGGED,
                modseq: 4
            },
        ]
    );
    assert_eq!(inbox.snapshot().messages[1].flags, SEEN, "b untouched");

    // UNCHANGEDSINCE 0 refuses everything (every mod-sequence is at least 1).
    let none = inbox
        .store_flags(&[a, b, c], FlagMode::Replace, SEEN, Some(0))
        .unwrap();
    assert_eq!(none.modified, [a, b, c]);
    assert!(none.stored.is_empty());
    assert_eq!(inbox.snapshot().highest_modseq, now);
    // Without a condition it is the plain STORE.
    let all = inbox
        .store_flags(&[a, b, c], FlagMode::Replace, SEEN, None)
        .unwrap();
    assert!(all.modified.is_empty());
    let got: Vec<(u32, u64)> = all.stored.iter().map(|s| (s.uid, s.modseq)).collect();
    // b already had exactly \Seen: unchanged, it keeps its mod-sequence.
    assert_eq!(got, [(a, now + 1), (b, 5), (c, now + 1)]);
}

#[test]
fn unchanged_since_sees_a_rename_by_another_program() {
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    let a = inbox.append(b"a\r\n", flags::SEEN, &[], None).unwrap();
    let seen_at = inbox.snapshot().highest_modseq;
    // Another program flags it; hato has not rescanned yet.
    let path = inbox.path_of(a).unwrap();
    fs::rename(&path, path.to_str().unwrap().replace(":2,S", ":2,FS")).unwrap();
    let done = inbox
        .store_flags(&[a], FlagMode::Add, DELETED, Some(seen_at))
        .unwrap();
    assert_eq!(
        done.modified,
        [a],
        "the rescan made it newer than the client's"
    );
    assert!(done.stored.is_empty());
}

#[test]
fn concurrent_writers_get_unique_increasing_mod_sequences() {
    let spool = tempfile::tempdir().unwrap();
    let (store, inbox) = open(spool.path(), "INBOX");
    for _ in 0..4 {
        inbox.append(b"x\r\n", 0, &[], None).unwrap();
    }
    let store = Arc::new(store);
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let inbox = store.user("u").unwrap().open("INBOX").unwrap();
                let mut seen = Vec::new();
                for i in 0..100 {
                    let mode = if i % 2 == 0 {
                        FlagMode::Add
                    } else {
                        FlagMode::Remove
                    };
                    let uids = [1 + t * 2, 2 + t * 2];
                    let done = inbox.store_flags(&uids, mode, SEEN, None).unwrap();
                    assert_eq!(done.stored.len(), 2);
                    assert_eq!(done.stored[0].modseq, done.stored[1].modseq);
                    seen.push(done.stored[0].modseq);
                }
                seen
            })
        })
        .collect();
    let results: Vec<Vec<u64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for seen in &results {
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "increasing");
    }
    let mut all: Vec<u64> = results.concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 200, "unique");
    let index = inbox.snapshot();
    assert_eq!(index.highest_modseq, *all.last().unwrap());
    assert_eq!(modseq_of(&inbox, 2), *results[0].last().unwrap());
    assert_eq!(modseq_of(&inbox, 4), *results[1].last().unwrap());
    // And the log agrees after a restart.
    let state = modseqs(&index);
    drop((store, inbox));
    let (_store, inbox) = open(spool.path(), "INBOX");
    assert_eq!(modseqs(&inbox.snapshot()), state);
}

#[test]
fn absent_uids_are_ranges() {
    let spool = tempfile::tempdir().unwrap();
    let (_store, inbox) = open(spool.path(), "INBOX");
    for _ in 0..6 {
        inbox.append(b"x\r\n", 0, &[], None).unwrap();
    }
    inbox.set_flags(&[2, 3, 6], FlagMode::Add, DELETED).unwrap();
    inbox.expunge(None).unwrap();
    let index = inbox.snapshot(); // 1, 4, 5
    assert_eq!(index.absent_uids(1, 5), [(2, 3)]);
    assert_eq!(index.absent_uids(0, u32::MAX), [(2, 3), (6, u32::MAX)]);
    assert_eq!(index.absent_uids(4, 5), []);
    assert_eq!(index.absent_uids(5, 4), []);
    assert_eq!(index.absent_uids(2, 2), [(2, 2)]);
}
