"""Drives MULTIAPPEND (RFC 3502), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and
CREATE-SPECIAL-USE (RFC 6154) with imapclient (PyPI) where it has API for them (multiappend,
list_folders, folder_status) and imaplib for the rest.
Usage: list_extended.py HOST PORT USER PASSWORD"""

import imaplib
import re
import sys
from datetime import datetime, timezone

from imapclient import IMAPClient

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def message(subject):
    return (
        f"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        f"Subject: {subject}\r\n\r\nBody of {subject}.\r\n"
    ).encode()


c = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
c.login(USER, PASSWORD)
caps = c.capabilities()
for cap in (b"LIST-EXTENDED", b"LIST-STATUS", b"CREATE-SPECIAL-USE", b"MULTIAPPEND", b"SPECIAL-USE"):
    assert cap in caps, (cap, caps)

# MULTIAPPEND: three messages in one command, one APPENDUID with the UID set.
when = datetime(2023, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
answer = c.multiappend(
    "INBOX",
    [
        {"msg": message("one"), "flags": [b"\\Seen"], "date": when},
        message("two"),
        {"msg": message("three"), "flags": [b"\\Flagged", b"$Work"]},
    ],
)
# imapclient returns the tagged answer as imaplib does: ('OK', [text]).
text = answer[1][0] if isinstance(answer, tuple) else answer
assert text.startswith(b"[APPENDUID ") and b" 1:3]" in text, answer
info = c.select_folder("INBOX")
assert info[b"EXISTS"] == 3, info
fetched = c.fetch([1, 2, 3], ["FLAGS", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
assert b"\\Seen" in fetched[1][b"FLAGS"], fetched
assert fetched[1][b"INTERNALDATE"].astimezone(timezone.utc) == when, fetched[1]
assert set(fetched[3][b"FLAGS"]) >= {b"\\Flagged", b"$Work"}, fetched
assert b"Subject: two" in fetched[2][b"BODY[HEADER.FIELDS (SUBJECT)]"], fetched
c.unselect_folder()

# A failing MULTIAPPEND (no such mailbox) stores nothing anywhere.
# (imapclient raises on NO from some versions on, and returns ('NO', [text]) before.)
try:
    refused = c.multiappend("Nowhere", [message("a"), message("b")])
except IMAPClient.Error as e:
    refused = ("NO", [str(e).encode()])
assert refused[0] == "NO" and b"TRYCREATE" in refused[1][0], refused
assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 3

# list_folders with patterns, and the special-use attributes.
c.create_folder("Work.Projects")
names = [name for _, _, name in c.list_folders(pattern="Work*")]
assert names == ["Work", "Work.Projects"], names
sent = [(flags, name) for flags, _, name in c.list_folders(pattern="Sen%")]
assert sent == [((b"\\HasNoChildren", b"\\Sent"), "Sent")], sent

# The rest has no imapclient API: imaplib's raw commands.
m = imaplib.IMAP4(HOST, PORT)
m.login(USER, PASSWORD)


def raw(*args):
    typ, data = m._simple_command(*args)
    assert typ == "OK", (args, typ, data)
    lists = m.untagged_responses.pop("LIST", [])
    statuses = m.untagged_responses.pop("STATUS", [])
    return [x for x in lists if x is not None], [x for x in statuses if x is not None]


# CREATE-SPECIAL-USE.
raw("CREATE", '"Old mail"', "(USE (\\Archive))")
typ, data = m._simple_command("CREATE", "Stars", "(USE (\\Flagged))")
assert typ == "NO" and b"[USEATTR]" in data[-1], (typ, data)
flags = {name: f for f, _, name in c.list_folders()}
assert b"\\Archive" in flags["Old mail"], flags
assert "Stars" not in flags, flags

# Several patterns, a selection option, and LIST-STATUS.
lists, statuses = raw(
    "LIST", "(SPECIAL-USE)", '""', '("INBOX" "Old*" "Sent")', "RETURN", "(STATUS (MESSAGES UNSEEN))"
)
assert lists == [b'(\\HasNoChildren \\Archive) "." "Old mail"', b'(\\HasNoChildren \\Sent) "." "Sent"'], lists
assert statuses == [b'"Old mail" (MESSAGES 0 UNSEEN 0)', b'"Sent" (MESSAGES 0 UNSEEN 0)'], statuses
lists, statuses = raw("LIST", '""', "INBOX", "RETURN", "(SUBSCRIBED STATUS (MESSAGES UNSEEN))")
assert lists == [b'(\\Subscribed \\HasNoChildren) "." "INBOX"'], lists
assert statuses == [b'"INBOX" (MESSAGES 3 UNSEEN 2)'], statuses
c.subscribe_folder("Work.Projects")
lists, _ = raw("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"W%"')
assert len(lists) == 1 and re.search(rb'"Work" \("CHILDINFO" \("SUBSCRIBED"\)\)$', lists[0]), lists
m.logout()
c.logout()
print("list-extended checks passed")
