#!/usr/bin/env python3
"""Memory per idle session with and without COMPRESS=DEFLATE (RFC 4978).

Opens 200 warm-up sessions, then N more (LOGIN, SELECT INBOX, and with --compress
`COMPRESS DEFLATE` plus one compressed NOOP, so the inflater has seen input), and prints the
server's PSS slope over the N: bytes per idle session.

Usage: compress_sessions.py --port P --pid PID --user U --password PW [--sessions 1000]
       [--compress]
"""

import argparse
import socket
import time
import zlib


def pss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss line")


def open_session(args, held):
    s = socket.create_connection(("127.0.0.1", args.port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"l LOGIN {args.user} {args.password}\r\n".encode())
    assert f.readline().startswith(b"l OK")
    s.sendall(b"s SELECT INBOX\r\n")
    while not f.readline().startswith(b"s "):
        pass
    if args.compress:
        s.sendall(b"z COMPRESS DEFLATE\r\n")
        assert f.readline().startswith(b"z OK")
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = zlib.decompressobj(-15)
        s.sendall(deflate.compress(b"n NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        answer = b""
        while b"n OK" not in answer:
            answer += inflate.decompress(s.recv(4096))
        held.append((s, f, deflate, inflate))
    else:
        s.sendall(b"n NOOP\r\n")
        assert f.readline().startswith(b"n OK")
        held.append((s, f))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--compress", action="store_true")
    args = p.parse_args()
    held = []
    for _ in range(200):
        open_session(args, held)
    time.sleep(2)
    before = pss(args.pid)
    for _ in range(args.sessions):
        open_session(args, held)
    time.sleep(3)
    after = pss(args.pid)
    per = (after - before) / args.sessions
    print(f"compress={args.compress}: {per:.0f} bytes per idle session "
          f"(PSS slope over {args.sessions} sessions)")


if __name__ == "__main__":
    main()
