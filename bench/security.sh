#!/usr/bin/env bash
# bench/security.sh: the cost of security, in one run: bench/run.sh three
# times on the same fleet size — plain TCP and unsigned; TLS with
# certificates but unsigned; TLS, signed and verified — and the ratios of the
# headline figure (row 2: an RPC to every node of a known list, no
# discovery): signing on versus off over the same transport, and all of
# security versus none.
#
#   cargo build --release --bins && bench/security.sh --nodes 1000 --runs 5
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/mco-bench-sec.XXXXXX")"
trap 'rm -rf "$out"' EXIT
"$here/run.sh" "$@" >"$out/plain.md"
"$here/run.sh" "$@" --secure --unsigned >"$out/tls.md"
"$here/run.sh" "$@" --secure >"$out/secure.md"
cat "$out/plain.md"
echo
cat "$out/tls.md"
echo
cat "$out/secure.md"
row2() { awk -F'|' '/^\| 2\. /{ gsub(/ /, "", $4); print $4 }' "$1"; }
inner() { awk -F'|' '/request sent → last/{ gsub(/ /, "", $3); print $3 }' "$1"; }
p="$(row2 "$out/plain.md")"
t="$(row2 "$out/tls.md")"
s="$(row2 "$out/secure.md")"
pi="$(inner "$out/plain.md")"
ti="$(inner "$out/tls.md")"
si="$(inner "$out/secure.md")"
echo
echo "| row 2 (RPC to a known list), median ms | plain TCP, unsigned | TLS, unsigned | TLS, signed + verified | signing on / off (both TLS) | all security / none |"
echo "|---|---|---|---|---|---|"
awk -v p="$p" -v t="$t" -v s="$s" 'BEGIN { printf "| whole mco process | %s | %s | %s | %.2f | %.2f |\n", p, t, s, s / t, s / p }'
awk -v p="$pi" -v t="$ti" -v s="$si" 'BEGIN { printf "| request sent → last reply | %s | %s | %s | %.2f | %.2f |\n", p, t, s, s / t, s / p }'
