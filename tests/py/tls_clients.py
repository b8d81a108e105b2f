"""IMAPS and STARTTLS with Python's ssl and imaplib: appends messages (one large enough to
fill the socket) over IMAPS, fetches them back byte for byte over IMAPS, STARTTLS and a
TLS 1.2-only connection, and checks that a client not trusting the certificate is refused.
Usage: tls_clients.py HOST PORT IMAPS_PORT CAFILE USER PASSWORD
Prints `VERSION <how> <TLS version>` for every connection made."""

import imaplib
import ssl
import sys

HOST, PORT, IMAPS_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CAFILE, USER, PASSWORD = sys.argv[4], sys.argv[5], sys.argv[6]
TIMEOUT = 30


def message(subject, lines):
    head = (
        "From: Alice <alice@example.com>\r\n"
        "To: Carol <carol@example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n"
        "\r\n"
    )
    body = "".join(f"line {i:07d} {'0123456789abcdef' * 4}\r\n" for i in range(lines))
    return (head + body).encode()


SMALL = message("tls-small", 3)
LARGE = message("tls-large", 12000)  # about 1 MB: the server must wait for the socket


def context(max12=False):
    ctx = ssl.create_default_context(cafile=CAFILE)
    if max12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def uid_of(c, subject):
    typ, data = c.uid("SEARCH", None, "HEADER", "Subject", subject)
    assert typ == "OK", (typ, data)
    uids = data[0].split()
    assert len(uids) == 1, (subject, data)
    return uids[0].decode()


def fetch(c, uid):
    typ, data = c.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    parts = [d for d in data if isinstance(d, tuple)]
    assert len(parts) == 1, data
    return parts[0][1]


def check_messages(c, how):
    typ, data = c.select("INBOX")
    assert typ == "OK", (typ, data)
    for subject, want in (("tls-small", SMALL), ("tls-large", LARGE)):
        got = fetch(c, uid_of(c, subject))
        assert got == want, f"{how}: {subject}: {len(got)} bytes back, {len(want)} sent"
    print(f"{how}: messages fetched intact")


def version(c, how):
    v = c.sock.version()
    assert v in ("TLSv1.2", "TLSv1.3"), (how, v)
    print(f"VERSION {how} {v}")
    return v


# IMAPS: append, then fetch back.
c = imaplib.IMAP4_SSL(HOST, IMAPS_PORT, ssl_context=context(), timeout=TIMEOUT)
version(c, "imaps")
assert "STARTTLS" not in c.capabilities, c.capabilities
typ, data = c.login(USER, PASSWORD)
assert typ == "OK", (typ, data)
for msg in (SMALL, LARGE):
    typ, data = c.append("INBOX", None, None, msg)
    assert typ == "OK", (typ, data)
check_messages(c, "imaps")
c.logout()

# STARTTLS on the plain port.
c = imaplib.IMAP4(HOST, PORT, timeout=TIMEOUT)
assert "STARTTLS" in c.capabilities, c.capabilities
typ, data = c.starttls(context())
assert typ == "OK", (typ, data)
version(c, "starttls")
assert "STARTTLS" not in c.capabilities, c.capabilities
typ, data = c.login(USER, PASSWORD)
assert typ == "OK", (typ, data)
check_messages(c, "starttls")
c.logout()

# A client that stops at TLS 1.2.
c = imaplib.IMAP4_SSL(HOST, IMAPS_PORT, ssl_context=context(max12=True), timeout=TIMEOUT)
assert version(c, "imaps-1.2") == "TLSv1.2"
typ, data = c.login(USER, PASSWORD)
assert typ == "OK", (typ, data)
check_messages(c, "imaps-1.2")
c.logout()

# A client that does not trust the certificate refuses it (the server counts a failure).
try:
    imaplib.IMAP4_SSL(HOST, IMAPS_PORT, ssl_context=ssl.create_default_context(),
                      timeout=TIMEOUT)
except ssl.SSLCertVerificationError as e:
    print(f"untrusted certificate refused as expected: {e}")
else:
    raise AssertionError("a client without the CA accepted the certificate")

print("tls clients checked")
