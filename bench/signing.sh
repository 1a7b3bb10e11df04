#!/usr/bin/env bash
# bench/signing.sh: what signing and verification cost, with everything
# else equal. Two fleets of N virtual nodes run side by side, both over TLS
# with a certificate per node: one with messages neither signed nor verified
# (security.sign = false), one in the secure default. The same RPC to every
# node of a known list (`mco rpc rpcutil ping --nodes FILE`) then goes to
# each in turn, R rounds, the order swapped every round, so both see the
# same machine: on a shared two-core box, runs minutes apart differ by tens
# of percent, more than what is measured here.
#
#   cargo build --release --bins && bench/signing.sh --nodes 1000 --runs 21
#
# Each round runs `-j` (whole process: wall time, the client's CPU, the
# responder's and the broker's) and `-v` (the client's own time from the
# request to the last reply) on each fleet. Every run's exit status and
# reply count are checked. Each run starts once both fleets are quiet, and
# the responder's and broker's CPU are read once they are quiet again, so
# they include work a call leaves behind (with --presign, the signed fleet
# refilling its prepared signature nonces). Markdown to stdout, progress to
# stderr.

set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/signing.sh [--nodes N] [--runs R] [--bin DIR] [--raw FILE] [--presign]

  --nodes N   virtual nodes in each fleet (default 1000)
  --runs R    rounds, after one untimed warm-up (default 21)
  --bin DIR   directory holding mco and mco-responder (as for bench/run.sh)
  --raw FILE  also write every round's figures to FILE (one line per round)
  --presign   the signed fleet signs with prepared nonces (presign = true)
              instead of the RFC 8032 default
EOF
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=1000
RUNS=21
BIN_ARGS=()
RAW=""
PRESIGN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
        --nodes=*) NODES="${1#*=}"; shift ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --bin) BIN_ARGS=(--bin "${2:?--bin needs a value}"); shift 2 ;;
        --bin=*) BIN_ARGS=(--bin "${1#*=}"); shift ;;
        --raw) RAW="${2:?--raw needs a file}"; shift 2 ;;
        --raw=*) RAW="${1#*=}"; shift ;;
        --presign) PRESIGN="--presign"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 64 ;;
    esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, not '$NODES'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$RUNS'"
((BASH_VERSINFO[0] >= 5)) || die "needs bash 5 (for \$EPOCHREALTIME)"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench-sign.XXXXXX")"
SERVERS=()
cleanup() {
    local p
    for p in "${SERVERS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${SERVERS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each fleet: bench/run.sh --serve, which writes its env file when all nodes
# answer discovery. One at a time, so neither starts up under the other.
CONFIGS=(unsigned signed)
declare -A FLAGS=([unsigned]="--secure --unsigned" [signed]="--secure $PRESIGN")
for c in "${CONFIGS[@]}"; do
    say "starting the $c fleet"
    # shellcheck disable=SC2086
    "$here/run.sh" --nodes "$NODES" "${BIN_ARGS[@]}" ${FLAGS[$c]} --serve "$out/$c.env" 2>"$out/$c.log" &
    SERVERS+=("$!")
    deadline=$((SECONDS + 120 + NODES / 10))
    until [[ -s "$out/$c.env" ]]; do
        kill -0 "${SERVERS[-1]}" 2>/dev/null || { cat "$out/$c.log" >&2; die "the $c fleet did not start"; }
        ((SECONDS < deadline)) || die "the $c fleet was not up within the deadline"
        sleep 0.2
    done
done

# Every fleet's responder and broker: each timed run waits for all of them
# to be quiet before it starts and after it ends.
QUIET_PIDS=()
for c in "${CONFIGS[@]}"; do
    # shellcheck disable=SC2207
    QUIET_PIDS+=($(
        # shellcheck disable=SC1090
        source "$out/$c.env"
        echo "$RESP_PID $NATS_PID"
    ))
done

# one CONFIG MODE: one run of row 2 against a fleet; MODE is -j or -v.
# Appends "wall_us client_us responder_us nats_us" (-j) or "largest
# per-node time in ms, wall_us" (-v) to $out/CONFIG.MODE.
one() {
    local c=$1 mode=$2 t0 t1 r0 r1 n0 n1 n
    (
        # shellcheck disable=SC1090
        source "$out/$c.env"
        export MCO_CONFIG XDG_CACHE_HOME
        wait_quiet "${QUIET_PIDS[@]}"
        r0="$(proc_cpu_us "$RESP_PID")"
        n0="$(proc_cpu_us "$NATS_PID")"
        times >"$out/cpu0"
        t0=$EPOCHREALTIME
        if ! "$MCO" rpc rpcutil ping --nodes "$NODES_FILE" --nats "$URL" "$mode" >"$out/run.out" 2>"$out/run.err"; then
            cat "$out/run.err" >&2
            die "$c $mode: mco failed"
        fi
        t1=$EPOCHREALTIME
        times >"$out/cpu1"
        wait_quiet "${QUIET_PIDS[@]}"
        r1="$(proc_cpu_us "$RESP_PID")"
        n1="$(proc_cpu_us "$NATS_PID")"
        if [[ $mode == -j ]]; then
            n="$(grep -o '"statuscode": *0\b' "$out/run.out" | wc -l)"
            [[ "$n" == "$NODES" ]] || die "$c -j: $n replies with status 0, expected $NODES"
            echo "$((${t1/./} - ${t0/./})) $(($(children_cpu_us "$out/cpu1") - $(children_cpu_us "$out/cpu0"))) $((r1 - r0)) $((n1 - n0))" >>"$out/$c.j"
        else
            grep -q "^Finished processing $NODES / $NODES hosts" "$out/run.out" ||
                die "$c -v: not all $NODES nodes answered"
            echo "$(grep -o '([0-9.]* ms)$' "$out/run.out" | tr -d '()ms ' | sort -g | tail -n1) $((${t1/./} - ${t0/./}))" >>"$out/$c.v"
        fi
    )
}

say "warm-up"
for c in "${CONFIGS[@]}"; do
    one "$c" -j
    one "$c" -v
done
rm -f "$out"/*.j "$out"/*.v
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= RUNS; r++)); do
    say "round $r of $RUNS"
    if ((r % 2)); then order=(unsigned signed); else order=(signed unsigned); fi
    for c in "${order[@]}"; do one "$c" -j; done
    for c in "${order[@]}"; do one "$c" -v; done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n "$RAW" ]]; then
    {
        echo "# round; then for unsigned and signed: -j wall us, mco CPU us, responder CPU us, nats-server CPU us; -v last reply ms, -v wall us"
        paste -d' ' "$out/unsigned.j" "$out/unsigned.v" "$out/signed.j" "$out/signed.v" | awk '{ print NR, $0 }'
    } >"$RAW"
fi

# median of column $2 (1-based) of file $1, divided by $3
median() {
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk -v d="$3" '{ v[NR] = $1 / d } END {
        printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# min and max of column $2 of file $1, divided by $3
range() {
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk -v d="$3" 'NR == 1 { lo = $1 } { hi = $1 } END {
        printf "%.1f–%.1f\n", lo / d, hi / d }'
}
# median over rounds of signed / unsigned, each round's pair run back to back
paired() {
    paste -d' ' "$out/signed.$1" "$out/unsigned.$1" | awk -v c="$2" -v n="$3" '{ print $c / $(c + n) }' |
        sort -g | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for c in "${CONFIGS[@]}"; do
    declare "wall_$c=$(median "$out/$c.j" 1 1000)"
    declare "inner_$c=$(median "$out/$c.v" 1 1)"
done

cat <<EOF
### Signing on versus off, interleaved: $NODES nodes, $RUNS rounds

$(nproc) cores; mco $("$(source "$out/signed.env" && echo "$MCO")" --version | awk '{ print $2 }'); both fleets TLS with a certificate per node, up side by side; the order swapped every round. Load average (1, 5, 15 min) before the rounds: $load_before; after: $load_after.

| \`mco rpc rpcutil ping --nodes FILE\`, $NODES nodes | whole process \`-j\`, median ms | min–max ms | mco CPU ms | responder CPU ms | nats-server CPU ms | whole process \`-v\`, median ms | request sent → last reply (\`-v\`), median ms |
|---|---|---|---|---|---|---|---|
EOF
for c in "${CONFIGS[@]}"; do
    label="TLS, unsigned"
    [[ $c == signed ]] && label="TLS, signed + verified"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
        "$(median "$out/$c.j" 1 1000)" "$(range "$out/$c.j" 1 1000)" \
        "$(median "$out/$c.j" 2 1000)" "$(median "$out/$c.j" 3 1000)" "$(median "$out/$c.j" 4 1000)" \
        "$(median "$out/$c.v" 2 1000)" "$(median "$out/$c.v" 1 1)"
done
cat <<EOF

| signed / unsigned | ratio of the medians | median of each round's ratio |
|---|---|---|
| whole process | $(awk -v s="$wall_signed" -v u="$wall_unsigned" 'BEGIN { printf "%.2f", s / u }') | $(paired j 1 4) |
| request sent → last reply | $(awk -v s="$inner_signed" -v u="$inner_unsigned" 'BEGIN { printf "%.2f", s / u }') | $(paired v 1 2) |
EOF
