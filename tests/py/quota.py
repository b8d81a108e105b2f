"""QUOTA (RFC 9208) with imapclient: get_quota_root and get_quota against limits of 1024 KiB
and 10 messages (set by the caller in the reg tree).
Usage: quota.py HOST PORT USER PASSWORD"""

import sys

from imapclient import IMAPClient

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

c = IMAPClient(HOST, port=PORT, ssl=False, timeout=30)
c.login(USER, PASSWORD)
caps = c.capabilities()
for cap in (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"):
    assert cap in caps, (cap, caps)

c.append("INBOX", b"Subject: quota\r\n\r\n" + b"x" * 3000 + b"\r\n")

roots, quotas = c.get_quota_root("INBOX")
assert roots.mailbox == "INBOX", roots
assert roots.quota_roots == [""], roots
got = {(q.quota_root, q.resource): (q.usage, q.limit) for q in quotas}
assert got == {("", "STORAGE"): (3, 1024), ("", "MESSAGE"): (1, 10)}, got

for quotas in (c.get_quota("INBOX"), c._get_quota("")):  # GETQUOTAROOT, then GETQUOTA ""
    got = {(q.quota_root, q.resource): (q.usage, q.limit) for q in quotas}
    assert got == {("", "STORAGE"): (3, 1024), ("", "MESSAGE"): (1, 10)}, got

c.logout()
print("quota ok")
