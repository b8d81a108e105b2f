"""COMPRESS=DEFLATE (RFC 4978) as a zlib-based client does it (Python's zlib with raw DEFLATE,
a sync flush after each command), over a plain connection and over IMAPS (compression inside
TLS): appends a large message, fetches it back byte for byte, and idles for a push.
Usage: compress_clients.py HOST PORT IMAPS_PORT CAFILE USER PASSWORD
Prints `COMPRESSED <how> <bytes read from the socket> <bytes inflated>` per connection."""

import socket
import ssl
import sys
import zlib

HOST, PORT, IMAPS_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CAFILE, USER, PASSWORD = sys.argv[4], sys.argv[5], sys.argv[6]
TIMEOUT = 30


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.deflate = None
        self.inflate = None
        self.wire = 0
        self.inflated = 0

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        if self.inflate:
            self.wire += len(chunk)
            chunk = self.inflate.decompress(chunk)
            self.inflated += len(chunk)
        self.buf += chunk

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def run(self, tag, command):
        self.send(f"{tag} {command}\r\n".encode())
        return self.until(tag)

    def until(self, tag):
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return lines, line
            lines.append(line)

    def compress(self):
        _, ok = self.run("z", "COMPRESS DEFLATE")
        assert ok.startswith(b"z OK"), ok
        assert not self.buf, "the server sent more before compressing"
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)


def message(subject, lines):
    head = f"Subject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\n"
    body = "".join(f"line {i:07d} {'0123456789abcdef' * 4}\r\n" for i in range(lines))
    return (head + body).encode()


def exercise(conn, how):
    assert conn.line().startswith(b"* OK")
    _, ok = conn.run("l", f"LOGIN {USER} {PASSWORD}")
    assert ok.startswith(b"l OK"), ok
    conn.compress()
    msg = message(f"compressed-{how}", 12000)  # about 1 MB
    conn.send(f"a APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    _, ok = conn.until("a")
    assert ok.startswith(b"a OK [APPENDUID"), ok
    uid = int(ok.split()[4].rstrip(b"]"))
    _, ok = conn.run("s", "SELECT INBOX")
    assert ok.startswith(b"s OK"), ok
    conn.send(f"f UID FETCH {uid} BODY.PEEK[]\r\n".encode())
    head = conn.line()
    assert head.endswith(f"{{{len(msg)}}}".encode()), head
    assert conn.exact(len(msg)) == msg, "the message changed on the way"
    _, ok = conn.until("f")
    assert ok.startswith(b"f OK"), ok
    conn.send(b"i IDLE\r\n")
    assert conn.line().startswith(b"+")
    return uid


def push(port, ctx=None):
    """Appends a message from another (plain, uncompressed) session."""
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    if ctx:
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    other = Conn(sock)
    assert other.line().startswith(b"* OK")
    other.run("l", f"LOGIN {USER} {PASSWORD}")
    msg = message("push", 3)
    other.send(f"a APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    _, ok = other.until("a")
    assert ok.startswith(b"a OK"), ok
    other.run("o", "LOGOUT")


def finish(conn, how):
    line = conn.line()
    assert line.endswith(b"EXISTS"), line
    conn.send(b"DONE\r\n")
    _, ok = conn.until("i")
    assert ok.startswith(b"i OK"), ok
    _, ok = conn.run("o", "LOGOUT")
    assert ok.startswith(b"o OK"), ok
    print(f"COMPRESSED {how} {conn.wire} {conn.inflated}")


plain = Conn(socket.create_connection((HOST, PORT), timeout=TIMEOUT))
exercise(plain, "plain")
push(PORT)
finish(plain, "plain")

ctx = ssl.create_default_context(cafile=CAFILE)
tls = Conn(ctx.wrap_socket(socket.create_connection((HOST, IMAPS_PORT), timeout=TIMEOUT),
                           server_hostname="localhost"))
exercise(tls, "imaps")
push(IMAPS_PORT, ctx)
finish(tls, "imaps")
print("compress clients checked")
