#!/usr/bin/env python3
"""SELECT on a large Maildir folder: the generator and the timing client of select_large.sh.

gen DIR [--count 100000]
    Writes a Maildir (cur/ new/ tmp/) with COUNT small messages in cur/, named
    `<time>.M<n>P<pid>.bench,S=<size>:2,<flags>` (Dovecot's `,S=` so no server needs a stat for
    the size), flags mixed (about 20% unseen), each file's mtime its delivery time.

select --port P --user U --password PW --pid PID [--comm NAME] [--cold | --first] [--repeat N]
       [--hold] [--strace OUT] [--label L]
    Per session: connect, LOGIN, then time `a SELECT INBOX` from sending it to the tagged OK,
    then LOGOUT and wait for the server to close. With --cold the page cache is dropped
    (`sync; echo 3 > /proc/sys/vm/drop_caches`) after LOGIN, right before the SELECT. With
    --first, the same single SELECT without dropping the cache. With
    --hold, one extra session keeps INBOX selected while the timed sessions run (so a server
    that shares an open folder between sessions can use it). The server process whose
    /proc/PID/io is sampled around the SELECT is PID itself, or with --comm the newest
    descendant of PID with that command name (Dovecot's per-connection `imap` process).
    With --strace, that process (all its threads) is traced during the SELECT with
    `strace -f -C -e trace=%file,%desc`, and the calls naming a message file are counted.
    Prints one JSON object.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

MARK = ".bench,"  # in every generated message file name, and in nothing else


def gen(args):
    root = args.dir
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    cur = os.path.join(root, "cur")
    n = args.count
    pid = os.getpid()
    start = int(time.time()) - n * 60 - 86400
    flag_mix = ["S", "S", "S", "RS", "S", "FS", "", "S", "", "S"]  # 20% unseen
    flags_o = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    body_pad = "The quick brown fox jumps over the lazy dog. " * 3
    t0 = time.time()
    for i in range(n):
        t = start + i * 60
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
        content = (
            f"Return-Path: <sender{i % 97}@example.org>\r\n"
            f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
            f"To: bench@example.com\r\n"
            f"Subject: benchmark message {i}\r\n"
            f"Date: {date}\r\n"
            f"Message-ID: <{i}.{t}@example.org>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n"
            f"\r\n"
            f"Message {i}.\r\n{body_pad[: (i * 7) % len(body_pad)]}\r\n"
        ).encode()
        name = f"{t}.M{i}P{pid}{MARK}S={len(content)}:2,{flag_mix[i % len(flag_mix)]}"
        path = os.path.join(cur, name)
        fd = os.open(path, flags_o, 0o600)
        os.write(fd, content)
        os.close(fd)
        os.utime(path, (t, t))
    print(f"generated {n} messages in {root}/cur in {time.time() - t0:.1f} s", file=sys.stderr)


# ----- client -----


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=600)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def command(self, tag, text):
        """Sends `tag text`, returns (untagged lines, tagged line, seconds to the tagged line)."""
        t0 = time.perf_counter()
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return untagged, line, time.perf_counter() - t0
            untagged.append(line)

    def logout(self):
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.sock.close()


def login(args):
    c = Conn(args.host, args.port)
    greeting = c.line()
    assert greeting.startswith(b"* OK"), greeting
    _, tagged, _ = c.command("l", f'LOGIN "{args.user}" "{args.password}"')
    assert tagged.startswith(b"l OK"), tagged
    return c


def ppid_map():
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), comm, int(fields[19]))  # ppid, comm, starttime
    return out


def target_pid(root, comm):
    if not comm:
        return root
    procs = ppid_map()
    found = []
    for pid, (ppid, name, start) in procs.items():
        p = pid
        while p in procs and p != root:
            p = procs[p][0]
        if p == root and pid != root and name == comm:
            found.append((start, pid))
    if not found:
        raise RuntimeError(f"no {comm} process under {root}")
    return max(found)[1]


def proc_io(pid):
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def cpu_seconds(pid):
    """User and system CPU time of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as e:
        print(f"cannot drop the page cache ({e}): cold means page cache warm", file=sys.stderr)
        return False


def start_strace(pid, out):
    tasks = os.listdir(f"/proc/{pid}/task")
    proc = subprocess.Popen(
        ["strace", "-f", "-C", "-qq", "-e", "trace=%file,%desc", "-o", out, "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:  # wait until every thread is traced
        traced = 0
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    if re.search(r"^TracerPid:\s+[1-9]", f.read(), re.M):
                        traced += 1
            except OSError:
                traced += 1  # thread gone
        if traced == len(tasks):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("strace did not attach")
    time.sleep(0.2)
    return proc, len(tasks)


def stop_strace(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Calls whose arguments include a path (so MARK in the line is a message file's name, not data
# such as a UID list being written or read).
PATH_CALLS = {
    "open", "openat", "openat2", "creat", "stat", "lstat", "newfstatat", "statx", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "unlink", "unlinkat", "utime", "utimes", "utimensat", "futimesat",
    "chmod", "fchmodat", "chown", "lchown", "fchownat", "truncate", "getxattr", "lgetxattr",
    "listxattr", "llistxattr", "setxattr", "lsetxattr", "removexattr", "lremovexattr",
}
CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)")


def parse_strace(path):
    """Calls that name a message file, by syscall; calls overall; the -C summary."""
    on_messages = {}
    calls = {}
    summary = []
    in_summary = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("% time"):
                in_summary = True
            if in_summary:
                summary.append(line.rstrip("\n"))
                continue
            m = CALL.match(line)
            if not m or "resumed>" in line and "<..." in line:
                continue
            name = m.group(1)
            calls[name] = calls.get(name, 0) + 1
            if name in PATH_CALLS and MARK in line:
                on_messages[name] = on_messages.get(name, 0) + 1
    opened = sum(v for k, v in on_messages.items() if k in ("open", "openat", "openat2"))
    return {
        "message_files_opened": opened,
        "calls_on_message_files": on_messages,
        "calls": calls,
        "summary": summary,
    }


def one_select(args, cold, strace_out=None):
    c = login(args)
    pid = target_pid(args.pid, args.comm)
    tracer = None
    result = {}
    try:
        if strace_out:
            tracer, threads = start_strace(pid, strace_out)
            result["traced_threads"] = threads
        if cold:
            result["caches_dropped"] = drop_caches()
        before, cpu_before = proc_io(pid), cpu_seconds(pid)
        untagged, tagged, seconds = c.command("a", "SELECT INBOX")
        after, cpu_after = proc_io(pid), cpu_seconds(pid)
    finally:
        if tracer:
            stop_strace(tracer)
    assert tagged.startswith(b"a OK"), tagged
    exists = [int(l.split()[1]) for l in untagged if l.endswith(b" EXISTS")]
    result.update(
        seconds=seconds,
        exists=exists[0] if exists else None,
        io={k: after[k] - before[k] for k in before},
        cpu_user=cpu_after[0] - cpu_before[0],
        cpu_sys=cpu_after[1] - cpu_before[1],
        server_pid=pid,
    )
    c.logout()
    time.sleep(0.3)  # let the server finish the session (and close the folder)
    if strace_out:
        result["strace"] = parse_strace(strace_out)
    return result


def select(args):
    out = {"label": args.label}
    if args.cold or args.first:
        out["cold"] = one_select(args, args.cold, args.strace)
    if args.repeat:
        holder = None
        if args.hold:
            holder = login(args)
            _, tagged, _ = holder.command("h", "SELECT INBOX")
            assert tagged.startswith(b"h OK"), tagged
        runs = [one_select(args, False) for _ in range(args.repeat)]
        if holder:
            holder.logout()
        out["warm"] = {
            "seconds": [r["seconds"] for r in runs],
            "mean": sum(r["seconds"] for r in runs) / len(runs),
            "exists": runs[-1]["exists"],
            "io": runs[-1]["io"],
            "cpu_user": sum(r["cpu_user"] for r in runs) / len(runs),
            "cpu_sys": sum(r["cpu_sys"] for r in runs) / len(runs),
        }
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--count", type=int, default=100000)
    s = sub.add_parser("select")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--comm", default="")
    s.add_argument("--cold", action="store_true")
    s.add_argument("--first", action="store_true", help="one SELECT like --cold, cache kept")
    s.add_argument("--repeat", type=int, default=0)
    s.add_argument("--hold", action="store_true")
    s.add_argument("--strace", default="")
    s.add_argument("--label", default="server")
    args = ap.parse_args()
    if args.cmd == "gen":
        gen(args)
    else:
        select(args)


if __name__ == "__main__":
    main()
