# Shared helpers of the bench/ scripts; source it (`. "$ROOT/bench/lib.sh"`).
# Every benchmark reports the agent's peak RSS the same way: VmHWM from
# /proc/PID/status (the most resident memory the process ever had), read
# while it still runs, at the end of the load; and its CPU time as
# utime + stime from /proc/PID/stat.

# cpu_ticks PID: utime + stime of a process, in clock ticks (getconf CLK_TCK)
cpu_ticks() {
    local stat f
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}

# peak_rss_kib PID: VmHWM of a running process, KiB (0 if it is gone)
peak_rss_kib() {
    local k v _
    { while read -r k v _; do
          [[ $k == VmHWM: ]] && { echo "$v"; return 0; }
      done <"/proc/$1/status"; } 2>/dev/null
    echo 0
}

# rss_kib PID: VmRSS now, KiB
rss_kib() {
    local k v _
    { while read -r k v _; do
          [[ $k == VmRSS: ]] && { echo "$v"; return 0; }
      done <"/proc/$1/status"; } 2>/dev/null
    echo 0
}

# free_port: a TCP port free on 127.0.0.1 right now
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until something accepts on 127.0.0.1:PORT (PID must live)
wait_port() {
    local _i
    for _i in $(seq 1 400); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "the agent exited" >&2; return 1; }
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

# wait_log FILE TEXT PID: until TEXT is in FILE (PID must live), 20 s at most
wait_log() {
    local _i
    for _i in $(seq 1 400); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { echo "the agent exited; its log:" >&2; tail -20 "$1" >&2; return 1; }
        sleep 0.05
    done
    echo "\"$2\" never appeared in $1" >&2
    return 1
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
ticks_s() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }

# memory_bound_kib CONFIG: the memory bound `fuwa check` computes for CONFIG
# (docs/limits.md: the sum of the parts it prints in bytes), KiB. $FUWA is
# the binary, run with $FUWA_ENV (as bench/steady.sh runs the agent); run
# it where the config's files exist (tail counts the files its globs match).
memory_bound_kib() {
    local out
    # shellcheck disable=SC2086 # FUWA_ENV is a list of VAR=value words
    out=$(env ${FUWA_ENV:-} "$FUWA" check -c "$1") || { echo "fuwa check -c $1 failed" >&2; return 1; }
    grep -q '^memory bound: ' <<<"$out" ||
        { echo "fuwa check printed no memory bound for $1" >&2; return 1; }
    awk '/^memory bound: / { on = 1; next }
         on && $1 ~ /^[0-9]+$/ { s += $1 }
         END { printf "%d\n", s / 1024 }' <<<"$out"
}

# peak_vs_bound LABEL PEAK_KIB BOUND_KIB: prints
# `LABEL: peak X MiB / bound Y MiB (Z%)` on stderr, keeps it for
# print_bounds, and stops the benchmark (exit 3) when the peak is over the
# bound: the bound is wrong, or the code holds more than it says.
BOUND_LINES=()
peak_vs_bound() {
    local line
    line=$(awk -v l="$1" -v p="$2" -v b="$3" 'BEGIN {
        printf "%s: peak %.1f MiB / bound %.1f MiB (%.0f%% of the bound)", l, p / 1024, b / 1024, (b > 0 ? 100 * p / b : 0) }')
    echo "== $line" >&2
    BOUND_LINES+=("$line")
    if (( $2 > $3 )); then
        echo "FAILED: $1: fuwa's peak RSS ($2 KiB) is over the memory bound of its config ($3 KiB)" >&2
        exit 3
    fi
}

# print_bounds: every peak_vs_bound line of the run, for the report
print_bounds() {
    (( ${#BOUND_LINES[@]} )) || return 0
    echo
    echo "Memory bound (\`fuwa check\`) against fuwa's peak RSS (VmHWM):"
    echo
    local l
    for l in "${BOUND_LINES[@]}"; do echo "- $l"; done
}
