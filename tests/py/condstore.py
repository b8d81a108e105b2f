"""Drives CONDSTORE and QRESYNC (RFC 7162) with imapclient (PyPI): ENABLE, HIGHESTMODSEQ on
SELECT/EXAMINE and STATUS, FETCH MODSEQ and CHANGEDSINCE, SEARCH MODSEQ, conditional STORE,
and VANISHED in place of EXPUNGE, with a second client making the changes.
Usage: condstore.py HOST PORT USER PASSWORD"""

import sys

from imapclient import IMAPClient

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def message(subject):
    return f"Subject: {subject}\r\nFrom: a@example.com\r\n\r\nHello.\r\n".encode()


def modseq(item):
    value = item[b"MODSEQ"]
    return value[0] if isinstance(value, tuple) else value


reader = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
reader.login(USER, PASSWORD)
caps = reader.capabilities()
assert b"CONDSTORE" in caps and b"QRESYNC" in caps, caps
enabled = reader.enable("CONDSTORE", "QRESYNC")
assert enabled == [b"CONDSTORE", b"QRESYNC"], enabled

writer = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
writer.login(USER, PASSWORD)
for i in range(4):
    writer.append("INBOX", message(f"m{i}"))
writer.select_folder("INBOX")

# EXAMINE after ENABLE: HIGHESTMODSEQ is part of the answer (RFC 7162 §3.1.2.1).
info = reader.select_folder("INBOX", readonly=True)
start = info[b"HIGHESTMODSEQ"]
assert info[b"EXISTS"] == 4, info
status = reader.folder_status("INBOX", [b"HIGHESTMODSEQ", b"MESSAGES"])
assert status[b"HIGHESTMODSEQ"] == start, (status, start)

fetched = reader.fetch([1, 2, 3, 4], ["MODSEQ", "FLAGS"])
assert sorted(fetched) == [1, 2, 3, 4], fetched
assert all(0 < modseq(v) <= start for v in fetched.values()), fetched

# The writer flags message 2: CHANGEDSINCE returns exactly it, with its new MODSEQ.
writer.add_flags([2], [b"\\Flagged"])
changed = reader.fetch([1, 2, 3, 4], ["FLAGS"], modifiers=[f"CHANGEDSINCE {start}"])
assert sorted(changed) == [2], changed
assert b"\\Flagged" in changed[2][b"FLAGS"], changed
new = modseq(changed[2])
assert new > start, (new, start)

ids = reader.search(["MODSEQ", str(start + 1)])
assert list(ids) == [2] and ids.modseq == new, (ids, getattr(ids, "modseq", None))

# A conditional STORE that lost the race is refused for that message only (imapclient has
# no STORE modifiers: through its imaplib connection).
typ, data = writer._imap.uid(
    "STORE", "1:2", f"(UNCHANGEDSINCE {start})", "+FLAGS", "(\\Seen)"
)
# imaplib returns the untagged FETCHes: only message 1 was stored, with its new MODSEQ.
assert typ == "OK" and len(data) == 1 and b"UID 1 " in data[0] and b"MODSEQ" in data[0], data
flags = reader.fetch([1, 2], ["FLAGS"])
assert b"\\Seen" in flags[1][b"FLAGS"] and b"\\Seen" not in flags[2][b"FLAGS"], flags

# The writer expunges message 3: the QRESYNC reader learns it as VANISHED at NOOP.
writer.add_flags([3], [b"\\Deleted"])
writer.uid_expunge([3])
text, responses = reader.noop()
vanished = [r for r in responses if b"VANISHED" in repr(r).encode()]
assert vanished, responses
assert not [r for r in responses if b"EXPUNGE" in repr(r).encode()], responses

after = reader.folder_status("INBOX", [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
assert after > new, (after, new)

reader.logout()
writer.logout()
print("condstore checked")
