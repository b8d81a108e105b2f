"""Logs in with Python's imaplib (LOGIN and AUTHENTICATE PLAIN) as users stored with each
password scheme, and checks that wrong passwords and unknown users are refused with
AUTHENTICATIONFAILED. Usage: login_schemes.py HOST PORT"""

import imaplib
import sys

HOST, PORT = sys.argv[1], int(sys.argv[2])

USERS = [
    ("alice", "alice-pw"),  # {ARGON2ID}
    ("bob", 'bob pw "quoted"'),  # {SHA512-CRYPT}, needs quoting on the wire
    ("carol", "carol-pw"),  # {PLAIN}
]


def connect():
    client = imaplib.IMAP4(HOST, PORT, timeout=20)
    assert "IMAP4REV1" in client.capabilities, client.capabilities
    assert "AUTH=PLAIN" in client.capabilities, client.capabilities
    return client


def expect_auth_failure(action, what):
    try:
        action()
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), f"{what}: {e}"
        print(f"refused as expected: {what}: {e}")
        return
    raise AssertionError(f"{what}: login unexpectedly succeeded")


for user, password in USERS:
    client = connect()
    typ, data = client.login(user, password)
    assert typ == "OK", (user, typ, data)
    typ, data = client.noop()
    assert typ == "OK", (typ, data)
    typ, data = client.logout()
    assert typ == "BYE", (typ, data)
    print(f"LOGIN ok: {user}")

    client = connect()
    typ, data = client.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
    assert typ == "OK", (user, typ, data)
    assert client.state == "AUTH"
    client.logout()
    print(f"AUTHENTICATE PLAIN ok: {user}")

    client = connect()
    expect_auth_failure(lambda: client.login(user, password + "x"), f"wrong password for {user}")
    # The session goes on after a failed login.
    typ, data = client.login(user, password)
    assert typ == "OK", (typ, data)
    client.logout()

client = connect()
expect_auth_failure(lambda: client.login("nobody", "whatever"), "unknown user")
expect_auth_failure(
    lambda: client.authenticate("PLAIN", lambda _: b"\0alice\0wrong"), "AUTHENTICATE wrong password"
)
client.logout()
print("all logins checked")
