#!/usr/bin/env python3
"""Memory per idle IMAP session, measured on a running server.

Opens N connections to an IMAP server, logs each in (and optionally puts it in IDLE), and reads
the server's memory (PSS or RSS of --pid and all its descendants, so multi-process servers such
as Dovecot are measured whole) at checkpoints. The marginal cost per session is the slope between the first and last
checkpoint, which cancels fixed costs (thread stacks, rings, allocator arenas).

The client side needs one descriptor per connection; this machine allows 20,000 per process,
so N up to ~19,000 fits one run.

With --tls the sessions use implicit TLS (IMAPS: point --port at the IMAPS listener; the
certificate is not verified, this measures the server's memory, not the client's trust).

Usage: idle_sessions.py --port P --pid PID --user U --password PW [--count 10000]
       [--checkpoints 2000,10000] [--idle] [--tls]
"""

import argparse
import os
import resource
import socket
import ssl
import sys
import time


def memory_kib(pid, field="Pss"):
    """Memory of pid and all its descendants, in KiB: Pss (proportional set size, which
    shares a page among the processes that map it, so a multi-process server is not counted
    many times over for its shared libraries) or Rss, from /proc/PID/smaps_rollup."""
    total = 0
    pids = [pid]
    seen = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return total


def read_line(sock, buf):
    while b"\r\n" not in buf[0]:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf[0] += chunk
    line, _, rest = buf[0].partition(b"\r\n")
    buf[0] = rest
    return line


def open_session(host, port, user, password, idle, tls=None):
    s = socket.create_connection((host, port), timeout=30)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname=host)
    buf = [b""]
    greeting = read_line(s, buf)
    assert greeting.startswith(b"* OK"), greeting
    s.sendall(f'l LOGIN "{user}" "{password}"\r\n'.encode())
    while True:
        line = read_line(s, buf)
        if line.startswith(b"l "):
            assert line.startswith(b"l OK"), line
            break
    if idle:
        s.sendall(b"i IDLE\r\n")
        line = read_line(s, buf)
        assert line.startswith(b"+"), line
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--checkpoints", default="2000,10000")
    ap.add_argument("--idle", action="store_true", help="send IDLE on every session")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    ap.add_argument("--label", default="server")
    ap.add_argument("--measure", choices=["Pss", "Rss"], default="Pss")
    ap.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS)")
    args = ap.parse_args()
    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    if checkpoints[-1] > hard - 100:
        sys.exit(f"need {checkpoints[-1]} descriptors, have {hard}")

    sessions = []
    readings = []
    base = memory_kib(args.pid, args.measure)
    started = time.time()
    for target in checkpoints:
        while len(sessions) < target:
            sessions.append(
                open_session(args.host, args.port, args.user, args.password, args.idle, tls)
            )
        time.sleep(args.settle)
        readings.append((target, memory_kib(args.pid, args.measure)))
        print(f"{args.label}: {target} sessions: {args.measure} {readings[-1][1]} KiB", flush=True)
    (n0, r0), (n1, r1) = readings[0], readings[-1]
    per_session = (r1 - r0) * 1024 / (n1 - n0)
    print(
        f"{args.label}: base {args.measure} {base} KiB; marginal {per_session:.0f} bytes per "
        f"{'IDLE' if args.idle else 'logged-in idle'}{' TLS' if args.tls else ''} session "
        f"(slope {n0}->{n1}); "
        f"total at {n1}: {r1 / 1024:.1f} MiB; setup {time.time() - started:.1f} s"
    )
    for s in sessions:
        s.close()


if __name__ == "__main__":
    main()
