#!/usr/bin/env bash
# bench/security.sh: the cost of security. bench/run.sh three times on the
# same fleet size — plain TCP and unsigned; TLS with certificates but
# unsigned; TLS, signed and verified — for every measurement's table; then
# bench/signing.sh, which runs the headline RPC (row 2: every node of a known
# list, no discovery) on a TLS-unsigned and a signed fleet side by side,
# interleaved, for the ratio of signing on versus off. Runs minutes apart on
# a shared machine differ by more than that ratio does, so it is taken only
# from the interleaved runs; the sequential tables give the ratio of all of
# security versus none.
#
#   cargo build --release --bins && bench/security.sh --nodes 1000 --runs 7 [--rounds 41]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS=41
args=()
nodes_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
        --rounds=*) ROUNDS="${1#*=}"; shift ;;
        --nodes | --bin) nodes_args+=("$1" "${2:?$1 needs a value}"); args+=("$1" "$2"); shift 2 ;;
        --nodes=* | --bin=*) nodes_args+=("$1"); args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
out="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench-sec.XXXXXX")"
trap 'rm -rf "$out"' EXIT
"$here/run.sh" "${args[@]}" >"$out/plain.md"
"$here/run.sh" "${args[@]}" --secure --unsigned >"$out/tls.md"
"$here/run.sh" "${args[@]}" --secure >"$out/secure.md"
"$here/signing.sh" "${nodes_args[@]}" --runs "$ROUNDS" >"$out/signing.md"
cat "$out/plain.md"
echo
cat "$out/tls.md"
echo
cat "$out/secure.md"
echo
cat "$out/signing.md"
row2() { awk -F'|' '/^\| 2\. /{ gsub(/ /, "", $4); print $4 }' "$1"; }
inner() { awk -F'|' '/request sent → last/{ gsub(/ /, "", $3); print $3 }' "$1"; }
p="$(row2 "$out/plain.md")"
t="$(row2 "$out/tls.md")"
s="$(row2 "$out/secure.md")"
pi="$(inner "$out/plain.md")"
ti="$(inner "$out/tls.md")"
si="$(inner "$out/secure.md")"
echo
echo "Sequential runs (each configuration's own minutes), row 2, median ms:"
echo
echo "| row 2 (RPC to a known list), median ms | plain TCP, unsigned | TLS, unsigned | TLS, signed + verified | all security / none |"
echo "|---|---|---|---|---|"
awk -v p="$p" -v t="$t" -v s="$s" 'BEGIN { printf "| whole mco process | %s | %s | %s | %.2f |\n", p, t, s, s / p }'
awk -v p="$pi" -v t="$ti" -v s="$si" 'BEGIN { printf "| request sent → last reply | %s | %s | %s | %.2f |\n", p, t, s, s / p }'
