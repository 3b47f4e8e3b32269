#!/usr/bin/env bash
# The HTTP input benchmark: one small JSON event per POST on keep-alive
# connections, into the null output, fuwa and (when FLUENT_BIT is set)
# Fluent Bit under the same load.
#
#   bench/http.sh
#   FLUENT_BIT=/path/to/fluent-bit bench/http.sh
#
# - fuwa: http input → memory buffer → null output (release build).
# - Fluent Bit: [INPUT] Name http → [OUTPUT] Name null, its defaults.
# - Load: fuwa-http-loadgen (one thread; CONNECTIONS keep-alive connections,
#   one request in flight on each, a ~210-byte JSON page-view event per POST),
#   WARMUP seconds, then 2xx responses counted for DURATION seconds.
# For each agent: requests/s, latency p50/p99, the agent's CPU seconds during
# the measured load (from /proc/PID/stat) and its peak RSS (VmHWM).
#
# Knobs (environment): DURATION (5), WARMUP (1), CONNECTIONS (16),
# NO_BUILD=1 (use existing release binaries), FUWA=/path/to/fuwa, FLUENT_BIT.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-16}
FLUENT_BIT=${FLUENT_BIT:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p fuwa -p fuwa-bench --bin fuwa --bin fuwa-http-loadgen >&2
fi
FUWA=${FUWA:-$TARGET/release/fuwa}
LOADGEN=$TARGET/release/fuwa-http-loadgen
for b in "$FUWA" "$LOADGEN"; do
    [[ -x "$b" ]] || { echo "$b is missing (build without NO_BUILD)" >&2; exit 2; }
done
if [[ -n "$FLUENT_BIT" && ! -x "$FLUENT_BIT" ]]; then
    echo "FLUENT_BIT=$FLUENT_BIT is not an executable" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/fuwa-bench-http.XXXXXX)
AGENT_PID=
cleanup() {
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent exited" >&2; return 1; }
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}
cpu_ticks() { # utime + stime of a process, in clock ticks
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

declare -A RPS P50 P99 CPU RSS HWMK
# measure NAME PORT: load the agent started as $AGENT_PID
measure() {
    local name=$1 port=$2 t0 t1 out hz
    wait_port "$port"
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$AGENT_PID")
    # the warm-up is inside the loadgen; CPU is counted over its whole run
    # and scaled to the measured part
    out=$("$LOADGEN" --addr "127.0.0.1:$port" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --path /bench.http)
    t1=$(cpu_ticks "$AGENT_PID")
    echo "   $name: $out" >&2
    RPS[$name]=$(sed -E 's/.* rps=([0-9]+).*/\1/' <<<"$out")
    P50[$name]=$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$out")
    P99[$name]=$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$out")
    CPU[$name]=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v m="$DURATION" -v w="$WARMUP" \
        'BEGIN { printf "%.2f", d / hz / (m + w) }')
    HWMK[$name]=$(hwm_kib "$AGENT_PID")
    RSS[$name]=$(awk -v k="${HWMK[$name]}" 'BEGIN { printf "%.1f", k / 1024 }')
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
}

# --- fuwa ---------------------------------------------------------------------
PORT=$(free_port)
cat >"$WORK/fuwa.toml" <<CONF
[agent]
log_level = "warn"

[[input]]
type = "http"
bind = "127.0.0.1:$PORT"
max_connections = 64

[[output]]
match = "**"
type = "null"
[output.buffer]
type = "memory"
flush_interval = "1s"
CONF
log "fuwa: http → memory buffer → null, $CONNECTIONS connections, ${DURATION}s"
BOUND=$(memory_bound_kib "$WORK/fuwa.toml")
"$FUWA" run -c "$WORK/fuwa.toml" --data-dir "$WORK/data" 2>"$WORK/fuwa.log" &
AGENT_PID=$!
measure fuwa "$PORT"
peak_vs_bound "http → memory buffer → null" "${HWMK[fuwa]}" "$BOUND"

# --- Fluent Bit -----------------------------------------------------------------
if [[ -n "$FLUENT_BIT" ]]; then
    PORT=$(free_port)
    cat >"$WORK/fluent-bit.conf" <<CONF
[SERVICE]
    flush        1
    log_level    warn
    http_server  off

[INPUT]
    name    http
    listen  127.0.0.1
    port    $PORT

[OUTPUT]
    name   null
    match  *
CONF
    FB_VERSION=$("$FLUENT_BIT" --version | head -1)
    log "$FB_VERSION: in_http → out_null"
    "$FLUENT_BIT" -c "$WORK/fluent-bit.conf" >"$WORK/fluent-bit.log" 2>&1 &
    AGENT_PID=$!
    measure fluent-bit "$PORT"
fi

# --- report ---------------------------------------------------------------------
echo
echo "HTTP POST, one JSON event per request, $CONNECTIONS keep-alive connections, ${DURATION}s after ${WARMUP}s warm-up, $(nproc) CPUs"
echo
echo "| agent | 2xx requests/s | p50 | p99 | agent CPU (cores) | peak RSS |"
echo "|---|---:|---:|---:|---:|---:|"
row() {
    printf '| %s | %s | %s µs | %s µs | %s | %s MiB |\n' "$1" "${RPS[$2]}" "${P50[$2]}" "${P99[$2]}" "${CPU[$2]}" "${RSS[$2]}"
}
row fuwa fuwa
if [[ -n "$FLUENT_BIT" ]]; then
    row "Fluent Bit ${FB_VERSION#Fluent Bit v}" fluent-bit
    RATIO=$(awk -v a="${RPS[fuwa]}" -v b="${RPS[fluent-bit]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "| **fuwa / Fluent Bit** | **${RATIO}×** | | | | |"
    echo
    if awk -v r="$RATIO" 'BEGIN { exit !(r >= 2.1) }'; then
        echo "target (≥ 2.1× Fluent Bit, i.e. ≥ 1.5× the faster of Fluent Bit and Vector): met"
    else
        echo "target (≥ 2.1× Fluent Bit, i.e. ≥ 1.5× the faster of Fluent Bit and Vector): NOT met"
    fi
fi
print_bounds
