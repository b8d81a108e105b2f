#!/usr/bin/env bash
# TLS handshakes per second per core, hato and Dovecot side by side in one run, on 127.0.0.1.
#
# For an RSA-2048 and an ECDSA P-256 certificate, `openssl s_time -new` opens fresh TLS
# connections to each server's IMAPS port for SECONDS seconds (full handshakes, TLS 1.3, no
# resumption). Reported: handshakes per wall-clock second (bounded by the one-process client
# on the same 2-core machine) and handshakes per second of server CPU (user + system of the
# server's whole process tree), which is the per-core figure. hato runs one worker (one core).
# Installs dovecot-imapd if missing (needs root). Everything started is stopped by pid.
# Usage: benches/tls_handshakes.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh

seconds=${1:-10}
hato_port=${HATO_PORT:-22143}
dovecot_port=${DOVECOT_PORT:-22144}

if ! command -v dovecot >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-imapd
fi
cargo build --release --quiet
start_workspace hato-tls-bench

cpu_seconds() { # pid -> utime+stime of the process tree, in seconds
    python3 -c 'import sys; sys.path.insert(0, "benches"); from noop_storm import cpu_seconds
print(cpu_seconds(int(sys.argv[1])))' "$1"
}

make_cert() { # kind -> writes $work/<kind>.crt and .key
    case $1 in
    rsa) openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
        -keyout "$work/rsa.key" -out "$work/rsa.crt" 2>/dev/null ;;
    ecdsa) openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -keyout "$work/ecdsa.key" -out "$work/ecdsa.crt" 2>/dev/null ;;
    esac
    chmod 644 "$work/$1.key"
}

run_s_time() { # label pid port -> prints "handshakes-per-s handshakes-per-cpu-s"
    local before after out count real
    before=$(cpu_seconds "$2")
    out=$(timeout $((seconds + 30)) openssl s_time -connect "127.0.0.1:$3" -new -time "$seconds" 2>&1)
    after=$(cpu_seconds "$2")
    count=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' <<<"$out")
    real=$(sed -n 's/^[0-9]* connections in \([0-9.]*\) real seconds.*/\1/p' <<<"$out")
    python3 -c "print(f'{$count / $real:.0f} {$count / max($after - $before, 1e-9):.0f}')"
    echo "$1: $count handshakes in $real s, server CPU $(python3 -c "print(f'{$after - $before:.2f}')") s" >>"$work/log"
}

declare -A result
for kind in rsa ecdsa; do
    make_cert "$kind"
    spool=$work/hato-$kind
    target/release/hato reg set Workers 1 --spool "$spool" >/dev/null
    target/release/hato reg set TlsCertificate "$work/$kind.crt" --spool "$spool" >/dev/null
    target/release/hato reg set TlsKey "$work/$kind.key" --spool "$spool" >/dev/null
    HATO_LOG=warn target/release/hato serve --spool "$spool" --imap "127.0.0.1:$hato_port" \
        --imaps "127.0.0.1:$((hato_port + 1))" --metrics "127.0.0.1:$((hato_port + 1000))" \
        --lmtp "127.0.0.1:$((hato_port + 2000))" >/dev/null 2>&1 &
    pid=$!
    pids+=("$pid")
    sleep 1
    result[hato-$kind]=$(run_s_time "hato $kind" "$pid" "$((hato_port + 1))")
    kill "$pid"; wait "$pid" 2>/dev/null || true

    dir=$work/dovecot-$kind
    mkdir -p "$dir/home"
    chown nobody:nogroup "$dir/home"
    write_dovecot_conf "$dir" "$dir/home" "$dovecot_port" "$((dovecot_port + 1))" \
        "$work/$kind.crt" "$work/$kind.key"
    dovecot -F -c "$dir/dovecot.conf" &
    pid=$!
    pids+=("$pid")
    sleep 2
    result[dovecot-$kind]=$(run_s_time "dovecot $kind" "$pid" "$((dovecot_port + 1))")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    sleep 1
done

cat "$work/log" >&2
echo
echo "| TLS 1.3 full handshakes ($seconds s of openssl s_time -new) | hato | Dovecot $(dovecot --version | cut -d' ' -f1) | hato / Dovecot |"
echo "|---|---|---|---|"
for kind in rsa ecdsa; do
    read -r h_wall h_cpu <<<"${result[hato-$kind]}"
    read -r d_wall d_cpu <<<"${result[dovecot-$kind]}"
    name=$([ "$kind" = rsa ] && echo "RSA-2048" || echo "ECDSA P-256")
    echo "| $name: handshakes per server CPU second (per core) | $h_cpu | $d_cpu | $(python3 -c "print(f'{$h_cpu / $d_cpu:.1f}x')") |"
    echo "| $name: handshakes per wall second (client-bound) | $h_wall | $d_wall | $(python3 -c "print(f'{$h_wall / $d_wall:.1f}x')") |"
done
