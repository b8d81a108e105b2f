#!/usr/bin/env python3
"""NOOP storm: N logged-in clients with INBOX selected, each sending NOOP at R per second (the
seed's Outlook 2013 figure is 6.4/s), on an unchanged mailbox. Reports the NOOPs answered, the
server's CPU time per 1,000 NOOPs (user + system, summed over its whole process tree) and the
round-trip latency percentiles.

One process drives every client with non-blocking sockets; each client's sends are spread
evenly (random phase), as independent Outlooks would be.

With --probe, one more client (its own thread and connection) does `SELECT INBOX` then
`UID FETCH 1:20 (FLAGS ENVELOPE)` every 100 ms, for a few seconds before the storm (quiet) and
during it, and reports the p50/p99 of each: what the storm costs everyone else.

Usage: noop_storm.py --port P --pid PID --user U --password PW [--clients 1000] [--rate 6.4]
       [--seconds 20] [--label NAME] [--probe]
"""

import argparse
import heapq
import os
import random
import resource
import selectors
import socket
import threading
import time


def cpu_seconds(pid):
    """utime + stime of pid and all its descendants, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    pids, seen = [pid], set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / ticks


def read_until(sock, tag):
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
        for line in buf.split(b"\r\n"):
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
                return


def open_session(port, user, password):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.recv(4096)
    s.sendall(f'l LOGIN "{user}" "{password}"\r\n'.encode())
    read_until(s, b"l")
    s.sendall(b"s SELECT INBOX\r\n")
    read_until(s, b"s")
    s.setblocking(False)
    return s


def probe(port, user, password, until, samples):
    """SELECT + FETCH round trips every 100 ms until `until` (monotonic), into `samples`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.recv(4096)
    s.sendall(f'l LOGIN "{user}" "{password}"\r\n'.encode())
    read_until(s, b"l")
    n = 0
    while time.monotonic() < until:
        n += 1
        began = time.monotonic()
        s.sendall(b"s%d SELECT INBOX\r\nf%d UID FETCH 1:20 (FLAGS ENVELOPE)\r\n" % (n, n))
        read_until(s, b"f%d" % n)
        samples.append(time.monotonic() - began)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))
    s.close()


def fill_inbox(port, user, password, count):
    """APPENDs small messages until INBOX has `count` (so the probe's FETCH has work)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.recv(4096)
    s.sendall(f'l LOGIN "{user}" "{password}"\r\n'.encode())
    read_until(s, b"l")
    s.sendall(b"s STATUS INBOX (MESSAGES)\r\n")
    buf = b""
    while b"\r\ns OK" not in buf and not buf.startswith(b"s OK"):
        buf += s.recv(65536)
    have = int(buf.split(b"MESSAGES ", 1)[1].split(b")", 1)[0])
    for i in range(have, count):
        body = (
            f"From: probe{i}@example.com\r\nTo: bench@example.com\r\n"
            f"Subject: probe message {i}\r\nMessage-ID: <probe{i}@bench>\r\n\r\nbody {i}\r\n"
        ).encode()
        s.sendall(b"a%d APPEND INBOX {%d}\r\n" % (i, len(body)))
        while not s.recv(4096).startswith(b"+"):
            pass
        s.sendall(body + b"\r\n")
        read_until(s, b"a%d" % i)
    s.close()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=6.4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--label", default="server")
    ap.add_argument("--probe", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    quiet = []
    if args.probe:
        fill_inbox(args.port, args.user, args.password, 20)
        probe(args.port, args.user, args.password, time.monotonic() + 3, quiet)
    socks = [open_session(args.port, args.user, args.password) for _ in range(args.clients)]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    period = 1.0 / args.rate
    start = time.monotonic() + 0.5
    schedule = [(start + random.random() * period, i) for i in range(args.clients)]
    heapq.heapify(schedule)
    sent_at = [dict() for _ in socks]
    pending = [b"" for _ in socks]
    counters = [0] * args.clients
    latencies = []
    end = start + args.seconds
    stormy = []
    if args.probe:
        prober = threading.Thread(
            target=probe, args=(args.port, args.user, args.password, end, stormy), daemon=True
        )
        prober.start()
    cpu_before = cpu_seconds(args.pid)
    while True:
        now = time.monotonic()
        while schedule and schedule[0][0] <= now:
            when, i = heapq.heappop(schedule)
            if when < end:
                counters[i] += 1
                tag = b"n%d" % counters[i]
                sent_at[i][tag] = time.monotonic()
                socks[i].send(tag + b" NOOP\r\n")
                heapq.heappush(schedule, (when + period, i))
        if not schedule and not any(sent_at):
            break
        timeout = max(0.0, schedule[0][0] - time.monotonic()) if schedule else 0.05
        if not schedule and time.monotonic() > end + 10:
            break  # answers that never came are counted as missing below
        for key, _ in sel.select(timeout):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except BlockingIOError:
                continue
            received = time.monotonic()
            buf = pending[i] + data
            *lines, pending[i] = buf.split(b"\r\n")
            for line in lines:
                tag = line.split(b" ", 1)[0]
                sent = sent_at[i].pop(tag, None)
                if sent is not None:
                    latencies.append(received - sent)
    cpu = cpu_seconds(args.pid) - cpu_before
    answered = len(latencies)
    missing = sum(len(d) for d in sent_at)
    probed = ""
    if args.probe:
        prober.join(timeout=30)
        probed = (
            f"; probe SELECT+FETCH p99 quiet {percentile(quiet, 0.99):.2f} ms, "
            f"during the storm {percentile(stormy, 0.99):.2f} ms "
            f"(p50 {percentile(quiet, 0.5):.2f} / {percentile(stormy, 0.5):.2f} ms, "
            f"{len(quiet)}/{len(stormy)} samples)"
        )
    print(
        f"{args.label}: {args.clients} clients x {args.rate}/s for {args.seconds:.0f} s: "
        f"{answered} NOOPs answered ({answered / args.seconds:.0f}/s), {missing} missing; "
        f"server CPU {cpu:.2f} s = {cpu * 1000 / max(answered, 1) * 1000:.1f} ms per 1000 NOOPs; "
        f"latency p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms"
        f"{probed}"
    )
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
