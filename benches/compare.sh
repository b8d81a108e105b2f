#!/usr/bin/env bash
# hato and Dovecot side by side in one run, on 127.0.0.1: memory per idle session, and the
# NOOP storm (N clients each sending NOOP at 6.4/s on an unchanged mailbox).
#
# Installs Debian's dovecot-imapd if missing (needs root, as Dovecot's privilege separation
# does), builds hato in release mode, starts both on loopback ports with equivalent setups
# (one PLAIN passwd-file user, Maildir), opens the same number of logged-in sessions to each
# (then, on fresh servers, sessions in IDLE; then the NOOP storm), and prints one table:
# figure, hato, Dovecot, ratio. Memory is PSS summed over each server's whole process tree, CPU
# is user + system time of the whole tree. Everything started is stopped by pid on exit.
# Usage: benches/compare.sh [FROM [TO [STORM_CLIENTS [STORM_SECONDS]]]]
#        (defaults 500 2000 1000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh

from=${1:-500}
to=${2:-2000}
storm_clients=${3:-1000}
storm_seconds=${4:-20}
hato_port=${HATO_PORT:-21143}
dovecot_port=${DOVECOT_PORT:-21144}

if ! command -v dovecot >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-imapd
fi
cargo build --release --quiet

start_workspace hato-compare
ulimit -n "$(ulimit -Hn)"

start_hato() {
    local spool=$work/hato-$1
    target/release/hato user add bench --password benchpw --scheme plain --spool "$spool" >/dev/null 2>&1
    # One user from one address holds every session here; lift the user+IP cap as the Dovecot
    # configuration does (mail_max_userip_connections).
    target/release/hato reg set MaxUserIpSessions 0 --spool "$spool" >/dev/null
    HATO_LOG=warn target/release/hato serve --spool "$spool" --imap "127.0.0.1:$hato_port" \
        --metrics "127.0.0.1:$((hato_port + 1000))" >/dev/null 2>&1 &
    pids+=($!)
    server_pid=$!
    sleep 1
}

start_dovecot() {
    local dir=$work/dovecot-$1
    mkdir -p "$dir/home"
    chown nobody:nogroup "$dir/home"
    write_dovecot_conf "$dir" "$dir/home" "$dovecot_port"
    dovecot -F -c "$dir/dovecot.conf" &
    pids+=($!)
    server_pid=$!
    sleep 2
}

measure() { # name port idle-flag -> prints bytes per session
    python3 benches/idle_sessions.py --port "$2" --pid "$server_pid" --user bench \
        --password benchpw --checkpoints "$from,$to" $3 --label "$1" --settle 3 |
        tee -a "$work/log" | sed -n 's/.*marginal \([0-9-]*\) bytes.*/\1/p'
}

stop_last() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    sleep 1
}

storm() { # name port -> prints "cpu-ms-per-1000 p50 p99 probe-quiet-p99 probe-storm-p99"
    timeout 600 python3 benches/noop_storm.py --port "$2" --pid "$server_pid" --user bench \
        --password benchpw --clients "$storm_clients" --seconds "$storm_seconds" --label "$1" \
        --probe | tee -a "$work/log" |
        sed -n 's/.*= \([0-9.]*\) ms per 1000 NOOPs; latency p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms; probe SELECT+FETCH p99 quiet \([0-9.]*\) ms, during the storm \([0-9.]*\) ms.*/\1 \2 \3 \4 \5/p'
}

start_hato plain; hato_auth=$(measure hato "$hato_port" ""); stop_last
start_dovecot plain; dovecot_auth=$(measure dovecot "$dovecot_port" ""); stop_last
start_hato idle; hato_idle=$(measure hato "$hato_port" --idle); stop_last
start_dovecot idle; dovecot_idle=$(measure dovecot "$dovecot_port" --idle); stop_last
start_hato storm
read -r hato_cpu hato_p50 hato_p99 hato_probe_quiet hato_probe_storm <<<"$(storm hato "$hato_port")"
stop_last
start_dovecot storm
read -r dovecot_cpu dovecot_p50 dovecot_p99 dovecot_probe_quiet dovecot_probe_storm <<<"$(storm dovecot "$dovecot_port")"
stop_last

cat "$work/log" >&2
ratio() { python3 -c "print(f'{$2 / $1:.1f}x')"; }
echo
echo "| figure (memory: $from -> $to sessions, PSS slope) | hato | Dovecot $(dovecot --version | cut -d' ' -f1) | Dovecot / hato |"
echo "|---|---|---|---|"
echo "| bytes per logged-in idle session | $hato_auth | $dovecot_auth | $(ratio "$hato_auth" "$dovecot_auth") |"
echo "| bytes per session in IDLE | $hato_idle | $dovecot_idle | $(ratio "$hato_idle" "$dovecot_idle") |"
echo "| NOOP storm ($storm_clients clients x 6.4/s, unchanged INBOX): server CPU ms per 1000 NOOPs | $hato_cpu | $dovecot_cpu | $(ratio "$hato_cpu" "$dovecot_cpu") |"
echo "| NOOP storm: latency p50 ms | $hato_p50 | $dovecot_p50 | $(ratio "$hato_p50" "$dovecot_p50") |"
echo "| NOOP storm: latency p99 ms | $hato_p99 | $dovecot_p99 | $(ratio "$hato_p99" "$dovecot_p99") |"
echo "| another client's SELECT+FETCH p99 ms, quiet | $hato_probe_quiet | $dovecot_probe_quiet | $(ratio "$hato_probe_quiet" "$dovecot_probe_quiet") |"
echo "| another client's SELECT+FETCH p99 ms, during the storm | $hato_probe_storm | $dovecot_probe_storm | $(ratio "$hato_probe_storm" "$dovecot_probe_storm") |"
