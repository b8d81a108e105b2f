"""Drives SORT (RFC 5256, RFC 5957 DISPLAY), THREAD (ORDEREDSUBJECT, REFERENCES) and
ESEARCH/ESORT RETURN options with imapclient (PyPI), checking the answers for a small mailbox
whose right order is known.
Usage: sort_thread.py HOST PORT USER PASSWORD"""

import sys

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def message(subject, sender, date, msgid, refs=None, body="Hi.\r\n"):
    head = (
        f"From: {sender}\r\n"
        f"To: list@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{msgid}@example.com>\r\n"
    )
    if refs:
        head += "References: " + " ".join(f"<{r}@example.com>" for r in refs) + "\r\n"
    return (head + "\r\n" + body).encode()


c = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
c.login(USER, PASSWORD)
caps = c.capabilities()
for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES",
            b"ESEARCH", b"ESORT"):
    assert cap in caps, (cap, caps)

c.create_folder("SortTest")
c.select_folder("SortTest")
mails = [
    message("Plans", "Zoe <zoe@example.com>", "Tue, 2 Jan 2024 10:00:00 +0000", "a", body="x" * 300),
    message("Re: Plans", "adam@example.com", "Wed, 3 Jan 2024 10:00:00 +0000", "b", ["a"]),
    message("[team] Budget", "Mike <mike@example.com>", "Mon, 1 Jan 2024 10:00:00 +0000", "c"),
    message("Re: [team] Budget", "Bea <bea@example.com>", "Thu, 4 Jan 2024 10:00:00 +0000", "d", ["c"]),
    message("Re: Plans", "carl@example.com", "Fri, 5 Jan 2024 10:00:00 +0000", "e", ["a", "b"],
            body="y" * 100),
]
uids = []
for m in mails:
    resp = c.append("SortTest", m)
    uids.append(int(resp.split(b"]")[0].split()[-1]))
assert uids == sorted(uids), uids
u = dict(zip("abcde", uids))

# imapclient uses UIDs (UID SORT / UID THREAD).
assert c.sort("DATE") == [u["c"], u["a"], u["b"], u["d"], u["e"]], c.sort("DATE")
assert c.sort(["REVERSE", "DATE"]) == [u["e"], u["d"], u["b"], u["a"], u["c"]]
# Base subjects: BUDGET, BUDGET, PLANS x3; ties by sequence number.
assert c.sort("SUBJECT") == [u["c"], u["d"], u["a"], u["b"], u["e"]], c.sort("SUBJECT")
assert c.sort(["FROM"]) == [u["b"], u["d"], u["e"], u["c"], u["a"]], c.sort("FROM")
# Display names first, the address where there is none: adam@, Bea, carl@, Mike, Zoe.
assert c.sort("DISPLAYFROM") == [u["b"], u["d"], u["e"], u["c"], u["a"]], c.sort("DISPLAYFROM")
assert c.sort(["SIZE", "REVERSE", "ARRIVAL"])[-1] == u["a"]
assert c.sort("DATE", criteria=["FROM", "example.com", "NOT", "SUBJECT", "budget"]) == [
    u["a"], u["b"], u["e"]]
assert c.sort("DATE", criteria="UID 999999") == []

threads = c.thread("REFERENCES")
assert threads == ((u["c"], u["d"]), (u["a"], u["b"], u["e"])), threads
threads = c.thread("ORDEREDSUBJECT")
assert threads == ((u["c"], u["d"]), (u["a"], (u["b"],), (u["e"],))), threads

# ESEARCH and ESORT: imapclient has no RETURN helper, so its raw command layer sends them.
esearch = c._raw_command_untagged(
    b"SEARCH", [b"RETURN", b"(MIN MAX COUNT ALL)", b"ALL"], response_name="ESEARCH")
text = b" ".join(x for x in esearch if isinstance(x, bytes)).decode()
assert f"UID MIN {u['a']} MAX {u['e']} COUNT 5 ALL {u['a']}:{u['e']}" in text, text
esort = c._raw_command_untagged(
    b"SORT", [b"RETURN", b"(COUNT ALL)", b"(DATE)", b"UTF-8", b"ALL"], response_name="ESEARCH")
text = b" ".join(x for x in esort if isinstance(x, bytes)).decode()
assert f"UID COUNT 5 ALL {u['c']},{u['a']}:{u['b']},{u['d']}:{u['e']}" in text, text

try:
    c.sort("DATE", charset="KOI8-R")
    raise AssertionError("KOI8-R accepted")
except IMAPClientError as e:
    assert "BADCHARSET" in str(e), e
    print(f"refused as expected: {e}")

c.close_folder()
c.delete_folder("SortTest")
c.logout()
print("sort, thread and esearch checked")
