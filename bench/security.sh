#!/usr/bin/env bash
# bench/security.sh: the cost of security, in one run: bench/run.sh without
# and then with TLS, signing and verification, on the same fleet size, and
# the ratio of the headline figure (row 2: an RPC to every node of a known
# list, no discovery).
#
#   cargo build --release --bins && bench/security.sh --nodes 1000 --runs 5
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench-sec.XXXXXX")"
trap 'rm -rf "$out"' EXIT
"$here/run.sh" "$@" >"$out/plain.md"
"$here/run.sh" "$@" --secure >"$out/secure.md"
cat "$out/plain.md"
echo
cat "$out/secure.md"
row2() { awk -F'|' '/^\| 2\. /{ gsub(/ /, "", $4); print $4 }' "$1"; }
inner() { awk -F'|' '/request sent → last/{ gsub(/ /, "", $3); print $3 }' "$1"; }
p="$(row2 "$out/plain.md")"
s="$(row2 "$out/secure.md")"
pi="$(inner "$out/plain.md")"
si="$(inner "$out/secure.md")"
echo
echo "| row 2 (RPC to a known list) | unsigned ms | signed + verified + TLS ms | ratio |"
echo "|---|---|---|---|"
awk -v p="$p" -v s="$s" 'BEGIN { printf "| whole mco process | %s | %s | %.2f |\n", p, s, s / p }'
awk -v p="$pi" -v s="$si" 'BEGIN { printf "| request sent → last reply | %s | %s | %.2f |\n", p, s, s / p }'
