#!/usr/bin/env bash
# The forward output's benchmark: fuwa-loadgen -> fuwa A (forward in ->
# memory buffer -> forward out) -> fuwa B (forward in -> null).
#
#   bench/forward_out.sh
#
# A's memory buffer is small (total_limit_size 16 MiB, overflow blocks), so
# after the warm-up the rate at which A acks the load generator is the rate
# at which its forward output gets chunks acked by B: the sustained
# forwarding rate. The first row sends straight to B (the ceiling of the
# input side on this machine). Each scenario: acked events/s, MB/s, ack p50
# and A's peak RSS (VmHWM).
#
# Knobs (environment): DURATION (5s), WARMUP (2s), CONNECTIONS (2),
# BATCH (1000), NO_BUILD=1 (use the existing release binaries), BIN_DIR
# (where fuwa and fuwa-loadgen are; default the release target dir: only
# a release build gives meaningful numbers).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-2}
BATCH=${BATCH:-1000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p fuwa -p fuwa-bench >&2
fi
BIN_DIR=${BIN_DIR:-$TARGET/release}
FUWA=$BIN_DIR/fuwa
LOADGEN=$BIN_DIR/fuwa-loadgen

WORK=$(mktemp -d /tmp/fuwa-fwdout-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name config -> sets PID
    "$FUWA" run -c "$2" --data-dir "$WORK/$1-data" >"$WORK/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}

stop() { # pid
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

field() { grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2; }

PORT_B=$("$LOADGEN" --free-port)
cat >"$WORK/b.toml" <<EOF
[agent]
log_level = "warn"
[[input]]
type = "forward"
bind = "127.0.0.1:$PORT_B"
udp_heartbeat = false
max_connections = 128
message_length_limit = "4MiB"
pending_bytes_limit = "16MiB"
[[output]]
match = "**"
type = "null"
[output.buffer]
type = "memory"
flush_interval = "1s"
EOF
start b "$WORK/b.toml"
B=$PID
"$LOADGEN" --port "$PORT_B" --wait-port 15s

declare -A EPS MBPS P50 HWM
echo "== straight to B (forward -> null)" >&2
"$LOADGEN" --port "$PORT_B" --connections "$CONNECTIONS" --batch "$BATCH" \
    --duration "$DURATION" --warmup "$WARMUP" --pid "$B" --json >"$WORK/direct.json"
cat "$WORK/direct.json" >&2

for compress in text gzip; do
    PORT_A=$("$LOADGEN" --free-port)
    cat >"$WORK/a-$compress.toml" <<EOF
[agent]
log_level = "warn"
[[input]]
type = "forward"
bind = "127.0.0.1:$PORT_A"
udp_heartbeat = false
max_connections = 128
message_length_limit = "4MiB"
pending_bytes_limit = "16MiB"
[[output]]
id = "fwd"
match = "**"
type = "forward"
servers = [{ host = "127.0.0.1", port = $PORT_B }]
compress = "$compress"
require_ack_response = true
keepalive = true
[output.buffer]
type = "memory"
flush_interval = "1s"
chunk_limit_size = "4MiB"
total_limit_size = "16MiB"
flush_thread_count = 2
EOF
    start "a-$compress" "$WORK/a-$compress.toml"
    A=$PID
    "$LOADGEN" --port "$PORT_A" --wait-port 15s
    echo "== A (forward -> forward, compress = $compress) -> B" >&2
    if ! "$LOADGEN" --port "$PORT_A" --connections "$CONNECTIONS" --batch "$BATCH" \
        --duration "$DURATION" --warmup "$WARMUP" --pid "$A" --json >"$WORK/$compress.json"; then
        echo "load generator failed against A ($compress); its log:" >&2
        tail -20 "$WORK/a-$compress.log" >&2
        exit 1
    fi
    cat "$WORK/$compress.json" >&2
    stop "$A"
    peak_vs_bound "A: forward → forward ($compress)" "$(field "$WORK/$compress.json" vmhwm_kib)" \
        "$(memory_bound_kib "$WORK/a-$compress.toml")"
    if grep -q "will retry\|ERROR" "$WORK/a-$compress.log"; then
        echo "A ($compress) reported errors:" >&2
        tail -5 "$WORK/a-$compress.log" >&2
        exit 1
    fi
done
B_HWM=$(peak_rss_kib "$B")
stop "$B"
peak_vs_bound "B: forward → null (memory buffer)" "$B_HWM" "$(memory_bound_kib "$WORK/b.toml")"

echo
echo "fuwa $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), $(nproc) CPUs," \
    "$CONNECTIONS connections × 1 message in flight, $BATCH events/message, $DURATION after $WARMUP warm-up"
echo
echo "| path | acked events/s | MB/s | ack p50 ms | peak RSS of the agent acking |"
echo "|---|---:|---:|---:|---:|"
row() {
    printf '| %s | %s | %s | %s | %.1f MiB |\n' "$1" "$(field "$2" events_per_sec)" \
        "$(field "$2" mb_per_sec)" "$(field "$2" ack_p50_ms)" \
        "$(awk -v k="$(field "$2" vmhwm_kib)" 'BEGIN { print k / 1024 }')"
}
row "loadgen → B (forward → null)" "$WORK/direct.json"
row "loadgen → A → forward (text) → B" "$WORK/text.json"
row "loadgen → A → forward (gzip) → B" "$WORK/gzip.json"
print_bounds
