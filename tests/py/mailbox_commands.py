"""Drives the IMAP4rev1 mailbox and message commands with imapclient (PyPI) and imaplib,
including error cases that must be answered with a tagged NO/BAD while the session goes on.
Usage: mailbox_commands.py HOST PORT USER PASSWORD"""

import email.utils
import imaplib
import sys
from datetime import datetime, timezone

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def message(subject, body="Hello.\r\n", sender="Alice <alice@example.com>"):
    return (
        f"From: {sender}\r\n"
        f"To: Bob <bob@example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {email.utils.format_datetime(datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n{body}"
    ).encode()


def expect_error(what, action, needle=None):
    try:
        action()
    except (IMAPClientError, imaplib.IMAP4.error) as e:
        if needle is not None:
            assert needle in str(e), f"{what}: {e!r} lacks {needle!r}"
        print(f"refused as expected: {what}: {e}")
        return
    raise AssertionError(f"{what}: unexpectedly succeeded")


c = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
c.login(USER, PASSWORD)
caps = c.capabilities()
for cap in (b"UIDPLUS", b"MOVE", b"UNSELECT", b"NAMESPACE", b"CHILDREN", b"SPECIAL-USE", b"ESEARCH"):
    assert cap in caps, (cap, caps)

# Namespaces and the default folders of a new user, with their special-use attributes.
ns = c.namespace()
assert ns.personal[0][1] == ".", ns
folders = {name: flags for flags, _, name in c.list_folders()}
for name, attr in [("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"), ("Trash", b"\\Trash"),
                   ("Junk", b"\\Junk"), ("Archive", b"\\Archive")]:
    assert name in folders and attr in folders[name], (name, folders)
assert "INBOX" in folders
lsub = {name: flags for flags, _, name in c.list_sub_folders()}
assert b"\\Sent" in lsub["Sent"], lsub  # Outlook 2013 reads special use from LSUB

# CREATE (with a parent), hierarchy, RENAME with children, DELETE, (UN)SUBSCRIBE.
c.create_folder("Work.Projects")
folders = {name: flags for flags, _, name in c.list_folders()}
assert b"\\HasChildren" in folders["Work"], folders
assert b"\\HasNoChildren" in folders["Work.Projects"], folders
assert [n for _, _, n in c.list_folders("Work.", "%")] == ["Work.Projects"]
c.rename_folder("Work", "Job")
names = [n for _, _, n in c.list_folders()]
assert "Job.Projects" in names and "Work" not in names, names
c.subscribe_folder("Job")
assert "Job" in [n for _, _, n in c.list_sub_folders()]
c.unsubscribe_folder("Job")
assert "Job" not in [n for _, _, n in c.list_sub_folders()]
c.delete_folder("Job.Projects")
c.delete_folder("Job")
# Non-ASCII names travel as modified UTF-7.
c.create_folder("送信済み")
assert "送信済み" in [n for _, _, n in c.list_folders()]
c.delete_folder("送信済み")

# APPEND with flags and date (APPENDUID), then SELECT.
when = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
r1 = c.append("INBOX", message("first"), flags=[b"\\Seen"], msg_time=when)
r2 = c.append("INBOX", message("second", "Second body with needle.\r\n"), flags=[b"$Work"])
r3 = c.append("INBOX", message("third", sender="Carol <carol@example.org>"))
assert b"APPENDUID" in r1, r1
sel = c.select_folder("INBOX")
assert sel[b"EXISTS"] == 3, sel
uidvalidity = sel[b"UIDVALIDITY"]
assert sel[b"UIDNEXT"] == 4, sel
assert b"$Work" in sel[b"FLAGS"], sel

# FETCH.
uids = c.search("ALL")
assert uids == [1, 2, 3], uids
data = c.fetch(uids, ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE"])
assert b"\\Seen" in data[1][b"FLAGS"], data[1]
assert b"$Work" in data[2][b"FLAGS"], data[2]
assert data[1][b"INTERNALDATE"].replace(tzinfo=None) == datetime(2023, 1, 2, 3, 4, 5), data[1]
assert data[1][b"RFC822.SIZE"] == len(message("first")), data[1]
assert data[1][b"ENVELOPE"].subject == b"first", data[1]
assert data[3][b"ENVELOPE"].from_[0].host == b"example.org", data[3]
assert data[1][b"BODYSTRUCTURE"][0] == b"text" or data[1][b"BODYSTRUCTURE"][0] == b"TEXT"
body = c.fetch([2], ["BODY.PEEK[]", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[TEXT]<0.6>"])[2]
assert body[b"BODY[]"] == message("second", "Second body with needle.\r\n"), body
assert body[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: second\r\n\r\n", body
assert body[b"BODY[TEXT]<0>"] == b"Second", body
# BODY[] without PEEK sets \Seen.
c.fetch([3], ["BODY[]"])
assert b"\\Seen" in c.get_flags([3])[3]

# SEARCH keys.
assert c.search(["SUBJECT", "second"]) == [2]
assert c.search(["BODY", "needle"]) == [2]
assert c.search(["FROM", "carol"]) == [3]
assert c.search(["UNSEEN"]) == [2]
assert c.search(["KEYWORD", "$Work"]) == [2]
assert c.search(["OR", "SUBJECT", "first", "SUBJECT", "third"]) == [1, 3]
assert c.search(["NOT", "SEEN"]) == [2]
assert c.search(["UID", "2:*"]) == [2, 3]
assert c.search(["SINCE", "1-Jan-2024"]) == [2, 3]

# STORE.
c.add_flags([2], [b"\\Flagged"])
assert set(c.get_flags([2])[2]) >= {b"\\Flagged", b"$Work"}
c.remove_flags([2], [b"$Work"])
assert b"$Work" not in c.get_flags([2])[2]
c.set_flags([1], [b"\\Answered"])
assert set(c.get_flags([1])[1]) == {b"\\Answered"}

# COPY (COPYUID) and MOVE.
c.create_folder("Keep")
c.copy([1], "Keep")  # COPYUID is checked byte for byte in tests/mailbox.rs
c.move([3], "Keep")
assert c.search("ALL") == [1, 2]
st = c.folder_status("Keep", ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
assert st[b"MESSAGES"] == 2 and st[b"UIDNEXT"] == 3, st

# EXPUNGE and UID EXPUNGE.
c.add_flags([1, 2], [b"\\Deleted"])
c.uid_expunge([2])
assert c.search("ALL") == [1]
c.expunge()
assert c.search("ALL") == []
c.unselect_folder()

# EXAMINE is read-only.
c.select_folder("Keep", readonly=True)
expect_error("STORE in EXAMINE", lambda: c.add_flags([1], [b"\\Seen"]), "READ-ONLY")
c.close_folder()

# ESEARCH (RFC 4731) and BINARY (RFC 3516).
attachment = b"\x01binary\xff"  # no NUL: imaplib cannot read literal8 (~{n}) answers
import base64 as _b64
multipart = (
    b"Subject: with attachment\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + _b64.b64encode(attachment) + b"\r\n--XX--\r\n"
)
c.select_folder("Keep")
c.append("Keep", multipart)
typ, data = c._imap._simple_command("UID", "SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
assert typ == "OK", (typ, data)
esearch = c._imap.untagged_responses.pop("ESEARCH", [None])[0]
assert esearch is not None and b"UID MIN 1 MAX 3 COUNT 3" in esearch, esearch
got = c.fetch([3], ["BINARY.PEEK[2]", "BINARY.SIZE[2]"])[3]
assert got[b"BINARY[2]"] == attachment, got
assert got[b"BINARY.SIZE[2]"] == len(attachment), got
c.unselect_folder()

# RENAME INBOX moves its messages into the new folder and leaves INBOX empty (RFC 3501).
c.append("INBOX", message("moved by rename"))
c.rename_folder("INBOX", "OldInbox")
assert c.select_folder("INBOX")[b"EXISTS"] == 0
assert c.select_folder("OldInbox")[b"EXISTS"] == 1
c.close_folder()

# Errors: tagged NO/BAD, and the session goes on.
expect_error("unknown mailbox", lambda: c.select_folder("NoSuchFolder"), "NONEXISTENT")
expect_error("path trick", lambda: c.create_folder("../escape"))
expect_error("slash", lambda: c.create_folder("a/b"))
expect_error("empty component", lambda: c.create_folder("a..b"))
expect_error("existing", lambda: c.create_folder("Keep"), "ALREADYEXISTS")
expect_error("delete INBOX", lambda: c.delete_folder("INBOX"))
expect_error("append to missing", lambda: c.append("Nowhere", message("x")), "TRYCREATE")
c.select_folder("Keep")
expect_error("bad sequence set", lambda: c._imap.fetch("0", "(FLAGS)"))
expect_error("garbage sequence set", lambda: c._imap.fetch("abc", "(FLAGS)"))
expect_error("sequence past the end", lambda: c._imap.fetch("99", "(FLAGS)"))
expect_error("bad fetch item", lambda: c._imap.fetch("1", "(FLAGZ)"))
expect_error("bad search", lambda: c._imap.search(None, "(SUBJECT"))
expect_error("invalid modified UTF-7", lambda: c._imap._simple_command("SELECT", '"&Jjo"'), "UTF-7")
assert c.search("ALL") == [1, 2, 3]
c.logout()
print(f"all mailbox commands checked (UIDVALIDITY {uidvalidity})")
