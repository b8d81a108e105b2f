# Sourced by the side-by-side benchmarks (compare.sh, select_large.sh, tls_handshakes.sh).
#
# start_workspace PREFIX: a temporary directory in $work, and an exit trap that stops every pid
# the script appended to $pids (TERM, then KILL) and removes the directory.
start_workspace() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$work"
    pids=()
    trap stop_workspace EXIT
}

stop_workspace() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}

# Debian's Dovecot with a private configuration for PLAIN passwd-file users (password
# `benchpw`), Maildir, loopback only; TLS only when an IMAPS port is given.
#
# write_dovecot_conf DIR HOME PORT [IMAPS_PORT CERT KEY]: writes DIR/passwd and
# DIR/dovecot.conf; mail lives in HOME/<user>/Maildir. Limits are raised so thousands of
# sessions fit (one process each). Optional, from the environment (e.g.
# `BENCH_USERS=100 DOVECOT_LMTP_PORT=2425 write_dovecot_conf ...`):
#   BENCH_USERS=N        users bench1..benchN besides `bench` (as `hato user add` makes them)
#   DOVECOT_LMTP_PORT=P  LMTP on 127.0.0.1:P (needs dovecot-lmtpd), delivering to those users
# Users are looked up by the local part (%n), so LMTP's `bench7@example.com` and IMAP's
# `bench7` are the same user with the same home, as in hato.
write_dovecot_conf() {
    local dir=$1 home=$2 port=$3 imaps_port=${4:-0} cert=${5:-} key=${6:-}
    local users=${BENCH_USERS:-0} lmtp_port=${DOVECOT_LMTP_PORT:-}
    local ssl="ssl = no" protocols="imap" lmtp_service="" i
    if [ -n "$cert" ]; then
        ssl="ssl = yes
ssl_cert = <$cert
ssl_key = <$key
ssl_min_protocol = TLSv1.2"
    fi
    if [ -n "$lmtp_port" ]; then
        protocols="imap lmtp"
        lmtp_service="service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}"
    fi
    mkdir -p "$dir"
    {
        echo "bench:{PLAIN}benchpw"
        for ((i = 1; i <= users; i++)); do echo "bench$i:{PLAIN}benchpw"; done
    } >"$dir/passwd"
    cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = $protocols
listen = 127.0.0.1
$ssl
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $dir/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$home/%n
}
default_process_limit = 30000
default_client_limit = 30000
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_limit = 30000
}
service anvil {
  client_limit = 70000
}
$lmtp_service
protocol imap {
  mail_max_userip_connections = 100000
}
CONF
}
