#!/usr/bin/env bash
# hato and Debian's Dovecot side by side in one run, on 127.0.0.1, driven by the same load
# generator (target/release/hato-load, src/bin/hato-load), with one table at the end:
#
#   idle        memory per idle session (logged in with INBOX selected; in IDLE): the PSS slope
#               between IDLE_FROM and IDLE_TO sessions, summed over each server's whole
#               process tree; and the server's CPU per minute while IDLE_TO sessions idle
#   noop-storm  STORM_CLIENTS clients x STORM_RATE NOOP/s on an unchanged INBOX: server CPU per
#               1,000 NOOPs, latency, and another client's SELECT + FETCH before and during it
#   connect     CONNECT_CLIENTS clients doing connect, LOGIN, LOGOUT in a loop: logins/s
#   mixed       MIXED_CLIENTS clients looping an imaptest-like session (login, select, fetch,
#               store, append, expunge, logout): operations/s and latency
#   wake        WAKE_USERS users in IDLE, WAKE_DELIVERIES LMTP deliveries at WAKE_RATE/s:
#               delivery -> untagged EXISTS latency
#
# Installs dovecot-imapd and dovecot-lmtpd if missing (needs root, as Dovecot's privilege
# separation does), builds hato and hato-load in release mode, gives both servers the same
# users (bench, bench1..benchN, PLAIN password benchpw) and the same mail (SEED_MESSAGES
# generated messages in every INBOX, delivered over each server's own LMTP), then runs each
# scenario against hato and then Dovecot, each on a freshly started server process (the mail
# stays). Scenarios run in the order above: wake adds messages, so it goes last. Every run is
# bounded by `timeout`; everything started is stopped by pid on exit (start_workspace).
# With the defaults a run takes about 8-10 minutes on 2 cores, plus the build.
#
# Usage: benches/compare.sh [IDLE_FROM [IDLE_TO [STORM_CLIENTS [STORM_SECONDS]]]]
# Other parameters from the environment (defaults in brackets): IDLE_CPU_SECONDS [20],
# STORM_RATE [6.4], WAKE_USERS [100], WAKE_DELIVERIES [1000], WAKE_RATE [50],
# MIXED_CLIENTS [20], MIXED_SECONDS [30], CONNECT_CLIENTS [20], CONNECT_SECONDS [20],
# SEED_MESSAGES [30], SCENARIOS ["idle noop-storm connect mixed wake"], HATO_PORT [21143],
# DOVECOT_PORT [21144] (IMAP; LMTP is on the port + 2000).
# More than ~19,000 idle sessions are spread by hato-load over several client processes
# (127.0.0.2, .3, ...), since one process may hold 20,000 descriptors here.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh

idle_from=${1:-${IDLE_FROM:-500}}
idle_to=${2:-${IDLE_TO:-2000}}
storm_clients=${3:-${STORM_CLIENTS:-1000}}
storm_seconds=${4:-${STORM_SECONDS:-20}}
idle_cpu_seconds=${IDLE_CPU_SECONDS:-20}
storm_rate=${STORM_RATE:-6.4}
wake_users=${WAKE_USERS:-100}
wake_deliveries=${WAKE_DELIVERIES:-1000}
wake_rate=${WAKE_RATE:-50}
mixed_clients=${MIXED_CLIENTS:-20}
mixed_seconds=${MIXED_SECONDS:-30}
connect_clients=${CONNECT_CLIENTS:-20}
connect_seconds=${CONNECT_SECONDS:-20}
seed_messages=${SEED_MESSAGES:-30}
scenarios=${SCENARIOS:-idle noop-storm connect mixed wake}
hato_port=${HATO_PORT:-21143}
dovecot_port=${DOVECOT_PORT:-21144}
started=$(date +%s)

# Numbered users: enough for the scenario that needs most (one per wake user or client).
users=$wake_users
for n in "$mixed_clients" "$connect_clients"; do
    if [ "$n" -gt "$users" ]; then users=$n; fi
done

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-lmtpd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
cargo build --release --quiet --bin hato --bin hato-load
hato=target/release/hato
load=target/release/hato-load

start_workspace hato-compare
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"
log=$work/log
touch "$log"

# hato: the same users, PLAIN like Dovecot's passwd-file so neither pays for password hashing.
hato_spool=$work/hato
for ((i = 0; i <= users; i++)); do
    user=bench
    if ((i > 0)); then user=bench$i; fi
    HATO_LOG=warn "$hato" user add "$user" --password benchpw --scheme plain \
        --spool "$hato_spool" >/dev/null
done
# The idle and noop-storm scenarios log one user (bench) in thousands of times from each
# client address, as one Outlook does; hato's per-user+IP cap (MaxUserIpSessions, default 10)
# would close all but the newest ten. Lifted, as mail_max_userip_connections is for Dovecot.
"$hato" reg set MaxUserIpSessions 0 --spool "$hato_spool" >/dev/null
# Pushes to IDLE sessions: the default, set explicitly since the wake figure depends on it.
"$hato" reg set Broadcast 1 --spool "$hato_spool" >/dev/null
# NOOPRateLimit (20/s per session) stays: Outlook's 6.4/s is under it and must not be slowed;
# only a storm faster than the limit would measure the pacing instead of the NOOPs.
if awk -v r="$storm_rate" 'BEGIN { exit !(r > 20) }'; then
    "$hato" reg set NOOPRateLimit 0 --spool "$hato_spool" >/dev/null
fi

# Dovecot: the same users in its passwd-file, LMTP on its own port.
dovecot_dir=$work/dovecot
mkdir -p "$dovecot_dir/home"
chown nobody:nogroup "$dovecot_dir/home"
BENCH_USERS=$users DOVECOT_LMTP_PORT=$((dovecot_port + 2000)) \
    write_dovecot_conf "$dovecot_dir" "$dovecot_dir/home" "$dovecot_port"

server_pid=
start_server() { # hato|dovecot -> sets server_pid, imap, lmtp
    case $1 in
    hato)
        imap=127.0.0.1:$hato_port lmtp=127.0.0.1:$((hato_port + 2000))
        HATO_LOG=warn "$hato" serve --spool "$hato_spool" --imap "$imap" --lmtp "$lmtp" \
            --metrics "127.0.0.1:$((hato_port + 1000))" >>"$work/hato.out" 2>&1 &
        ;;
    dovecot)
        imap=127.0.0.1:$dovecot_port lmtp=127.0.0.1:$((dovecot_port + 2000))
        dovecot -F -c "$dovecot_dir/dovecot.conf" >>"$work/dovecot.out" 2>&1 &
        ;;
    esac
    server_pid=$!
    pids+=("$server_pid")
    local i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/${imap%:*}/${imap#*:}") 2>/dev/null; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$1 did not start; see $work/$1.out" >&2
    cat "$work/$1.out" >&2
    exit 1
}

stop_server() { # TERM, up to 20 s to finish (hato's ShutdownGrace is 10 s), then KILL
    local i
    kill "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}

calc() { # an arithmetic expression (rates and seconds may be fractions) -> whole seconds
    awk "BEGIN { printf \"%d\", $1 }"
}

declare -A result
run() { # name server limit-seconds hato-load-args... -> result[server-name] = its RESULT line
    local name=$1 server=$2 limit=$3 out=$work/run.out
    shift 3
    echo "== $server: $name" >&2
    start_server "$server"
    if timeout --kill-after=10 "$limit" "$load" "$@" --imap "$imap" --pid "$server_pid" \
        --label "$server" >"$out" 2>&1; then
        result[$server-$name]=$(grep '^RESULT ' "$out" | tail -n 1)
    else
        echo "$server: $name failed or timed out (${limit} s):" >&2
        tail -n 20 "$out" >&2
    fi
    cat "$out" >>"$log"
    stop_server
}

seed() { # server: the same messages in every INBOX, over the server's LMTP
    echo "== $1: seeding $((users + 1)) users with $seed_messages messages" >&2
    start_server "$1"
    timeout 600 "$load" seed --lmtp "$lmtp" --users "$users" --messages "$seed_messages" |
        tee -a "$log" >&2
    stop_server
}

seed hato
seed dovecot

for server in hato dovecot; do
    case " $scenarios " in *" idle "*)
        limit=$(calc "300 + $idle_to / 10")
        run idle-selected "$server" "$limit" idle --from "$idle_from" --to "$idle_to" \
            --cpu-seconds 0
        ;;
    esac
done
for server in hato dovecot; do
    case " $scenarios " in *" idle "*)
        limit=$(calc "300 + $idle_to / 10 + $idle_cpu_seconds")
        run idle "$server" "$limit" idle --idle --from "$idle_from" --to "$idle_to" \
            --cpu-seconds "$idle_cpu_seconds"
        ;;
    esac
done
for name in noop-storm connect mixed wake; do
    case " $scenarios " in *" $name "*) ;; *) continue ;; esac
    for server in hato dovecot; do
        case $name in
        noop-storm)
            run "$name" "$server" "$(calc "$storm_seconds + 240 + $storm_clients / 10")" noop-storm \
                --clients "$storm_clients" --rate "$storm_rate" --seconds "$storm_seconds" --probe
            ;;
        connect)
            run "$name" "$server" "$(calc "$connect_seconds + 240")" connect \
                --clients "$connect_clients" --seconds "$connect_seconds"
            ;;
        mixed)
            run "$name" "$server" "$(calc "$mixed_seconds + 240")" mixed \
                --clients "$mixed_clients" --seconds "$mixed_seconds"
            ;;
        wake)
            port=$([ "$server" = hato ] && echo "$hato_port" || echo "$dovecot_port")
            run "$name" "$server" "$(calc "$wake_deliveries / $wake_rate + 240")" wake \
                --lmtp "127.0.0.1:$((port + 2000))" --users "$wake_users" \
                --deliveries "$wake_deliveries" --rate "$wake_rate"
            ;;
        esac
    done
done

cat "$log" >&2

field() { # RESULT-line key -> value
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

ratio() { # hato dovecot cost|rate|none -> how many times better hato is
    awk -v h="$1" -v d="$2" -v kind="$3" 'BEGIN {
        if (kind == "none") { print ""; exit }
        if (h == "" || d == "") { print "n/a"; exit }
        a = (kind == "cost") ? d : h; b = (kind == "cost") ? h : d
        if (b + 0 == 0) { print "n/a"; exit }
        r = a / b
        printf (r < 0.95 ? "%.2f×\n" : "%.1f×\n"), r }'
}

row() { # figure scenario key cost|rate|none [target]
    local figure=$1 which=$2 key=$3 kind=$4 target=${5:-} h d
    case " $scenarios " in *" ${which%-selected} "*) ;; *) return 0 ;; esac
    h=$(field "${result[hato-$which]:-}" "$key")
    d=$(field "${result[dovecot-$which]:-}" "$key")
    echo "| $figure | ${h:-failed} | ${d:-failed} | $(ratio "$h" "$d" "$kind") | $target |"
}

echo
echo "| figure | hato | Dovecot $(dovecot --version | cut -d' ' -f1) | hato better by (Dovecot/hato for costs and latencies, hato/Dovecot for rates) | target |"
echo "|---|---|---|---|---|"
row "bytes per logged-in idle session, INBOX selected (PSS slope $idle_from -> $idle_to sessions)" idle-selected bytes_per_session cost "≥ 20×"
row "bytes per session in IDLE (same)" idle bytes_per_session cost "≥ 20×"
row "server CPU ms per minute, $idle_to sessions in IDLE" idle cpu_ms_per_min cost
row "NOOP storm ($storm_clients clients × $storm_rate/s, unchanged INBOX): server CPU ms per 1,000 NOOPs" noop-storm cpu_ms_per_1000 cost "≥ 5×"
row "NOOP storm: latency p50 ms" noop-storm p50_ms cost
row "NOOP storm: latency p99 ms" noop-storm p99_ms cost
row "NOOP storm: NOOPs unanswered" noop-storm missing none
row "another client's SELECT + UID FETCH 1:20 p99 ms, before the storm" noop-storm probe_quiet_p99_ms cost
row "the same, during the storm" noop-storm probe_storm_p99_ms cost
row "connect ($connect_clients clients: connect, LOGIN, LOGOUT): logins per second" connect logins_per_s rate
row "connect: LOGIN latency p99 ms" connect login_p99_ms cost
row "connect: server CPU ms per login" connect cpu_ms_per_login cost
row "mixed ($mixed_clients clients, imaptest-like sessions): operations per second" mixed ops_per_s rate "≥ 2×"
row "mixed: per-operation latency p99 ms" mixed p99_ms cost
row "mixed: errors (NO/BAD answers)" mixed errors none "0"
row "wake ($wake_users users in IDLE, $wake_deliveries LMTP deliveries at $wake_rate/s): delivery -> EXISTS p50 ms" wake p50_ms cost
row "wake: delivery -> EXISTS p99 ms" wake p99_ms cost "hato ≤ 5 ms"
row "wake: wakes missed (not seen within 5 s)" wake missed none "0"
echo
echo "Run took $(($(date +%s) - started)) s." >&2
