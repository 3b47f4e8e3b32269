#!/usr/bin/env bash
# forward -> file buffer -> firehose against a stand-in endpoint that always
# succeeds (fuwa-firehose-sink): events/s and PutRecordBatch calls/s, with and
# without aggregation. Knobs: DURATION (10s), NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10s}
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p fuwa -p fuwa-bench >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
FUWA=$BIN/fuwa
LOADGEN=$BIN/fuwa-loadgen
SINK=$BIN/fuwa-firehose-sink
WORK=$(mktemp -d /tmp/fuwa-fhbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
field() { grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2; }

echo "| aggregate | acked events/s | delivered events/s | PutRecordBatch calls/s | records/s | records per call | avg record bytes | fuwa peak RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for agg in false true; do
  d=$WORK/$agg; mkdir -p "$d"
  SP=$("$LOADGEN" --free-port)
  "$SINK" --port "$SP" --stats "$d/sink.json" & PIDS+=($!)
  "$LOADGEN" --port "$SP" --wait-port 10s
  PORT=$("$LOADGEN" --free-port)
  cat >"$d/fuwa.toml" <<CFG
[agent]
log_level = "warn"
[[input]]
type = "forward"
bind = "127.0.0.1:$PORT"
udp_heartbeat = false
max_connections = 128
message_length_limit = "4MiB"
pending_bytes_limit = "16MiB"
[[output]]
id = "fh"
type = "firehose"
delivery_stream = "bench"
region = "us-east-1"
endpoint = "http://127.0.0.1:$SP"
aggregate = $agg
[output.buffer]
type = "file"
flush_interval = "1s"
flush_thread_count = 2
CFG
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true \
    "$FUWA" run -c "$d/fuwa.toml" --data-dir "$d/data" >"$d/fuwa.log" 2>&1 &
  FPID=$!; PIDS+=($FPID)
  "$LOADGEN" --port "$PORT" --wait-port 15s
  t0=$(date +%s.%N)
  "$LOADGEN" --port "$PORT" --duration "$DURATION" --warmup 0s --pid "$FPID" --json >"$d/load.json"
  while [[ -n "$(ls "$d/data/buffer/fh" 2>/dev/null)" ]]; do sleep 0.2; done
  sleep 0.5
  t1=$(date +%s.%N)
  events=$(field "$d/load.json" total_events)
  acked=$(field "$d/load.json" events_per_sec)
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$FPID/status")
  peak_vs_bound "forward → firehose (aggregate = $agg)" "$hwm" "$(memory_bound_kib "$d/fuwa.toml")"
  calls=$(field "$d/sink.json" calls); recs=$(field "$d/sink.json" records); bytes=$(field "$d/sink.json" bytes)
  awk -v a="$agg" -v ack="$acked" -v e="$events" -v c="$calls" -v r="$recs" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v h="$hwm" 'BEGIN {
    dt = t1 - t0
    printf "| %s | %d | %.0f | %.0f | %.0f | %.1f | %.0f | %.1f MiB |\n", a, ack, e / dt, c / dt, r / dt, r / c, b / r * 3 / 4, h / 1024 }'
  kill "$FPID"; wait "$FPID" 2>/dev/null || true
done
echo
echo "(avg record bytes: request bytes per record, base64 removed; the stand-in endpoint answers every call with success)"
print_bounds
