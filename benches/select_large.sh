#!/usr/bin/env bash
# SELECT on a 100,000-message Maildir folder, hato and Dovecot side by side, on 127.0.0.1.
#
# Installs Debian's dovecot-imapd and strace if missing (needs root, as Dovecot's privilege
# separation and dropping the page cache do), builds hato in release mode, writes one Maildir
# with COUNT small messages in cur/ (names carry Dovecot's ,S=<size>; flags mixed) and hard-links
# it into hato's spool (<spool>/mail/bench/) and into Dovecot's home (~bench/Maildir). Then, for
# each server in turn, on a fresh process that never saw the folder:
#   cold   the first SELECT INBOX (hato builds its hato-uidlist, Dovecot its index), with the page
#          cache dropped after LOGIN, right before the SELECT
#   warm   SELECT INBOX in a new session, after the previous one logged out (mean of 5)
#   shared SELECT INBOX in a new session while another session keeps INBOX selected (mean of 5)
# timed by benches/select_large.py from sending `a SELECT INBOX` to the tagged OK; /proc/PID/io
# and the CPU time of the serving process are read around each SELECT. Then, twice per server,
# its index is removed and the server restarted: right after its own runs, for a first SELECT
# with the page cache kept (the cold figure without disk reads), and at the end for a cold
# SELECT under strace that counts the calls naming a message file (an open would be a body
# read; hato opens none).
# Prints one table. Everything started is stopped by pid on exit. Takes about 2-3 minutes.
# Timings are wall-clock on whatever else the machine runs: keep it otherwise idle.
# Usage: benches/select_large.sh [COUNT]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh

count=${1:-100000}
hato_port=${HATO_PORT:-21145}
dovecot_port=${DOVECOT_PORT:-21146}
repeat=5
started=$(date +%s)

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
cargo build --release --quiet

start_workspace hato-select
trap 'exit 130' INT TERM

client() { timeout 600 python3 benches/select_large.py "$@"; }

echo "generating $count messages..." >&2
t0=$(date +%s)
client gen "$work/src" --count "$count"
spool=$work/hato
home=$work/dovecot/home
hato_box=$spool/mail/bench
dovecot_box=$home/bench/Maildir
target/release/hato user add bench --password benchpw --scheme plain --spool "$spool" \
    >"$work/useradd.log" 2>&1 || { cat "$work/useradd.log" >&2; exit 1; }
mkdir -p "$spool/mail" "$home/bench"
cp -al "$work/src" "$hato_box"
cp -al "$work/src" "$dovecot_box"
chown -R nobody:nogroup "$home"
echo "Maildir ready in $(($(date +%s) - t0)) s ($(du -sh "$work/src" | cut -f1))" >&2

dir=$work/dovecot
write_dovecot_conf "$dir" "$home" "$dovecot_port"

wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" \
            2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
start_hato() {
    HATO_LOG=warn target/release/hato serve --spool "$spool" --imap "127.0.0.1:$hato_port" \
        --metrics "127.0.0.1:$((hato_port + 1000))" >>"$work/hato.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    wait_port "$hato_port"
}
start_dovecot() {
    dovecot -F -c "$dir/dovecot.conf" &
    server_pid=$!
    pids+=("$server_pid")
    wait_port "$dovecot_port"
}
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}
forget() { # server: remove its index of the folder
    case $1 in
    hato) rm -f "$hato_box/hato-uidlist" ;;
    dovecot) rm -f "$dovecot_box"/dovecot* ;;
    esac
}
select_() { # server out.json [options]: one client run against the running server
    local server=$1 out=$2 port=$hato_port comm=()
    shift 2
    if [ "$server" = dovecot ]; then port=$dovecot_port comm=(--comm imap); fi
    client select --port "$port" --user bench --password benchpw --pid "$server_pid" \
        "${comm[@]}" --label "$server" "$@" >"$work/$out"
}

for server in hato dovecot; do
    echo "$server: cold, warm, shared..." >&2
    "start_$server"
    select_ "$server" "$server.json" --cold --repeat "$repeat"
    select_ "$server" "$server-shared.json" --repeat "$repeat" --hold
    stop_server
    case $server in
    hato) hato_index=$(du -cb "$hato_box/hato-uidlist" | tail -1 | cut -f1) ;;
    dovecot) dovecot_index=$(du -cb "$dovecot_box"/dovecot* | tail -1 | cut -f1) ;;
    esac
    # Right after this server's own runs, so its directory (and for hato the inodes) are cached.
    echo "$server: index removed, restarted: first SELECT with the page cache kept..." >&2
    forget "$server"
    "start_$server"
    select_ "$server" "$server-first.json" --first
    stop_server
done

for server in hato dovecot; do
    echo "$server: index removed, restarted: cold SELECT under strace..." >&2
    forget "$server"
    "start_$server"
    select_ "$server" "$server-strace.json" --cold --strace "$work/$server.strace"
    stop_server
done

python3 - "$work" "$hato_index" "$dovecot_index" "$count" "$(dovecot --version | cut -d' ' -f1)" <<'PY'
import json, sys
work, hato_index, dovecot_index, count, version = sys.argv[1:]
def load(name):
    with open(f"{work}/{name}.json") as f:
        return json.load(f)
h, d = load("hato"), load("dovecot")
hs, ds = load("hato-shared"), load("dovecot-shared")
hf, df = load("hato-first"), load("dovecot-first")
ht, dt = load("hato-strace"), load("dovecot-strace")
for r in (h["cold"], d["cold"], h["warm"], d["warm"], hs["warm"], ds["warm"], hf["cold"], df["cold"]):
    assert r["exists"] == int(count), r
dropped = h["cold"]["caches_dropped"] and d["cold"]["caches_dropped"]
cold = "page cache dropped" if dropped else "page cache warm: drop_caches not permitted"

def ms(x): return f"{x * 1000:.1f} ms"
def cpu(r): return f"{r['cpu_user'] * 1000:.0f} + {r['cpu_sys'] * 1000:.0f} ms"
def size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
def opened(r): return r["cold"]["strace"]["message_files_opened"]
def other(r):
    return sum(v for k, v in r["cold"]["strace"]["calls_on_message_files"].items()
               if not k.startswith("open"))
rows = [  # figure, hato, Dovecot, format, ratio shown
    (f"SELECT INBOX, cold ({cold}), first open of the folder",
     h["cold"]["seconds"], d["cold"]["seconds"], ms, True),
    ("SELECT INBOX, first open of the folder, page cache kept",
     hf["cold"]["seconds"], df["cold"]["seconds"], ms, True),
    (f"SELECT INBOX, warm, new session (mean of {len(h['warm']['seconds'])})",
     h["warm"]["mean"], d["warm"]["mean"], ms, True),
    (f"SELECT INBOX, warm, another session has INBOX selected (mean of {len(hs['warm']['seconds'])})",
     hs["warm"]["mean"], ds["warm"]["mean"], ms, True),
    ("server CPU, user + sys: cold SELECT", h["cold"], d["cold"], cpu, False),
    ("server CPU, user + sys: first open, page cache kept", hf["cold"], df["cold"], cpu, False),
    ("server CPU, user + sys: warm SELECT, new session (mean)", h["warm"], d["warm"], cpu, False),
    ("message files opened by the cold SELECT (strace)", opened(ht), opened(dt), str, False),
    ("other calls naming a message file (stat, rename, ...)", other(ht), other(dt), str, False),
    ("read from disk by the cold SELECT (/proc/PID/io read_bytes)",
     h["cold"]["io"]["read_bytes"], d["cold"]["io"]["read_bytes"], size, True),
    ("read from disk by the first open, page cache kept (read_bytes)",
     hf["cold"]["io"]["read_bytes"], df["cold"]["io"]["read_bytes"], size, False),
    ("read by read calls, cold SELECT (rchar)",
     h["cold"]["io"]["rchar"], d["cold"]["io"]["rchar"], size, False),
    ("read by read calls, warm SELECT (rchar)",
     h["warm"]["io"]["rchar"], d["warm"]["io"]["rchar"], size, False),
    ("index on disk (hato-uidlist; Dovecot's dovecot* files)",
     int(hato_index), int(dovecot_index), size, True),
]
print(f"\n| figure ({int(count):,} messages, loopback) | hato | Dovecot {version} | Dovecot / hato |")
print("|---|---|---|---|")
for name, a, b, fmt, with_ratio in rows:
    r = f"{b / a:.2f}x" if with_ratio and a else "-"
    print(f"| {name} | {fmt(a)} | {fmt(b)} | {r} |")
print(f"\nCold SELECT under strace (slowed by tracing, not in the table): hato "
      f"{ms(ht['cold']['seconds'])}, Dovecot {ms(dt['cold']['seconds'])}.")
for label, r in (("hato", ht), ("Dovecot", dt)):
    s = r["cold"]["strace"]
    print(f"{label} ({r['cold']['traced_threads']} threads traced): calls naming a message file: "
          f"{s['calls_on_message_files'] or 'none'}; busiest calls:")
    print("\n".join("    " + l for l in s["summary"][:8]))
print(f"\nwarm SELECT times, hato: {' '.join(ms(x) for x in h['warm']['seconds'])}; "
      f"Dovecot: {' '.join(ms(x) for x in d['warm']['seconds'])}")
PY
echo "benchmark took $(($(date +%s) - started)) s (plus the clean-up of $work)" >&2
