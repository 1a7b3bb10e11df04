#!/usr/bin/env bash
# bench/compare.sh: two builds of the `mco` client against one running fleet,
# interleaved. For a change to the client: build the old and the new binary,
# keep a fleet up with `bench/run.sh --serve FILE` (any flags), then
#
#   bench/compare.sh --fleet FILE --runs 41 OLD/mco NEW/mco
#
# Each round runs row 2 (`mco rpc rpcutil ping --nodes FILE -j`) once with
# each binary, the order swapped every round, so that both see the same
# machine; every run must get a reply from every node. Prints the median,
# quartiles and the median CPU (user + system) of each binary, and the
# median of the rounds' new / old wall-time ratios.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'EOF'
usage: bench/compare.sh --fleet FILE [--runs R] [--args "ARGS"] OLD_MCO NEW_MCO
  --fleet FILE  the file `bench/run.sh --serve FILE` wrote for a running fleet
  --runs R      rounds, after one untimed warm-up of each (default 21)
  --args ARGS   the mco arguments instead of row 2's
                (default: "rpc rpcutil ping --nodes NODES_FILE -j")
EOF
}

FLEET="" RUNS=21 ARGS=""
while (($#)); do
    case "$1" in
        --fleet) FLEET="${2:?--fleet needs a file}"; shift 2 ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --args) ARGS="${2:?--args needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) break ;;
    esac
done
(($# == 2)) || { usage >&2; die "give the two mco binaries to compare"; }
OLD="$1" NEW="$2"
[[ -s "$FLEET" ]] || die "--fleet: $FLEET is not a fleet file from bench/run.sh --serve"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$RUNS'"
for b in "$OLD" "$NEW"; do [[ -x "$b" ]] || die "$b is not an executable"; done

# shellcheck disable=SC1090
source "$FLEET"
export MCO_CONFIG XDG_CACHE_HOME
NODES="$(grep -c . "$NODES_FILE")"
# Row 2 unless told otherwise; only then is every node's reply counted.
ROW2=""
if [[ -z "$ARGS" ]]; then
    ROW2=1
    ARGS="rpc rpcutil ping --nodes $NODES_FILE -j"
fi
SHOWN="${ARGS//$NODES_FILE/FILE}"
out="$(mktemp -d "${TMPDIR:-/tmp}/mco-compare.XXXXXX")"
trap 'rm -rf "$out"' EXIT

# one NAME BINARY: appends "wall_us cpu_us" to $out/NAME.
one() {
    local t0 t1 c0 c1 n
    times >"$out/cpu0"
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086
    "$2" $ARGS --nats "$URL" >"$out/run.out" 2>"$out/run.err" ||
        { cat "$out/run.err" >&2; die "$2 failed"; }
    t1=$EPOCHREALTIME
    times >"$out/cpu1"
    if [[ -n "$ROW2" ]]; then
        n="$(grep -o '"statuscode": *0\b' "$out/run.out" | wc -l)"
        [[ "$n" == "$NODES" ]] || die "$2: $n replies with status 0, expected $NODES"
    fi
    c0="$(children_cpu_us "$out/cpu0")"
    c1="$(children_cpu_us "$out/cpu1")"
    echo "$((${t1/./} - ${t0/./})) $((c1 - c0))" >>"$out/$1"
}

one old "$OLD"
one new "$NEW"
rm -f "$out/old" "$out/new"
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then
        one old "$OLD"
        one new "$NEW"
    else
        one new "$NEW"
        one old "$OLD"
    fi
done

# stats FILE COLUMN: median, 25th and 75th percentile, in ms
stats() {
    awk -v c="$2" '{ print $c / 1000 }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.1f %.1f %.1f", m, v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)] }'
}
# row NAME BINARY: one line of the table
row() {
    local wall cpu
    read -r -a wall <<<"$(stats "$out/$1" 1)"
    read -r -a cpu <<<"$(stats "$out/$1" 2)"
    echo "| $1: \`$2\` | ${wall[0]} | ${wall[1]}–${wall[2]} | ${cpu[0]} |"
}
cat <<EOF
### \`mco $SHOWN\`, $NODES nodes in the fleet: two builds interleaved, $RUNS rounds

Load average (1, 5, 15 min) after the rounds: $(cut -d' ' -f1-3 /proc/loadavg).

| build | wall median ms | wall quartiles ms | mco CPU median ms |
|---|---|---|---|
$(row old "$OLD")
$(row new "$NEW")

Median of the rounds' new / old wall-time ratios: $(paste -d' ' "$out/new" "$out/old" | awk '{ print $1 / $3 }' | sort -g |
    awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }').
EOF
