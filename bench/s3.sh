#!/usr/bin/env bash
# forward -> file buffer -> gzip -> S3 (a local moto server): raw MB/s acked,
# MB/s delivered to S3, fuwa's CPU per MB of raw records and its peak RSS.
#
#   PYTHON=/var/tmp/fuwa-ci/venv/bin/python bench/s3.sh
#
# PYTHON must have moto[server] and boto3 (tests/python/requirements.txt).
# moto is a Python server: it, not fuwa, limits the delivered MB/s here, so
# the number that tells whether compression keeps up is fuwa's CPU time per
# MB of raw records (gzip on blocking threads, in parallel with uploads).
# Knobs: DURATION (10s), CONNECTIONS (2), BATCH (1000), NO_BUILD=1, LEVEL (gzip level, default 6).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-2}
BATCH=${BATCH:-1000}
PYTHON=${PYTHON:-${FUWA_PYTHON:-python3}}
LEVEL=${LEVEL:-6}
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p fuwa -p fuwa-bench >&2
FUWA=$ROOT/target/release/fuwa
LOADGEN=$ROOT/target/release/fuwa-loadgen
WORK=$(mktemp -d /tmp/fuwa-s3bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

S3PORT=$("$LOADGEN" --free-port)
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$S3PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
"$LOADGEN" --port "$S3PORT" --wait-port 30s
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  "$PYTHON" "$ROOT/tests/python/s3_util.py" create-bucket "http://127.0.0.1:$S3PORT" bench us-east-1

PORT=$("$LOADGEN" --free-port)
cat >"$WORK/fuwa.toml" <<CFG
[agent]
log_level = "warn"
[[input]]
type = "forward"
bind = "127.0.0.1:$PORT"
udp_heartbeat = false
[[output]]
id = "s3"
type = "s3"
bucket = "bench"
region = "us-east-1"
endpoint = "http://127.0.0.1:$S3PORT"
force_path_style = true
key = "content_type=\${tag}/year=%Y/month=%m/day=%d/hour=%H/\${chunk_id}.json.gz"
compression = "gzip"
compression_level = $LEVEL
time_key = "time"
[output.buffer]
type = "file"
flush_interval = "1s"
flush_thread_count = 2
CFG
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
  "$FUWA" run -c "$WORK/fuwa.toml" --data-dir "$WORK/data" >"$WORK/fuwa.log" 2>&1 &
FPID=$!
PIDS+=($FPID)
"$LOADGEN" --port "$PORT" --wait-port 15s
clk=$(getconf CLK_TCK)
cpu() { awk -v t="$clk" '{ print ($14 + $15) / t }' "/proc/$FPID/stat"; }
t0=$(date +%s.%N)
"$LOADGEN" --port "$PORT" --connections "$CONNECTIONS" --batch "$BATCH" --duration "$DURATION" \
  --warmup 0s --pid "$FPID" --json >"$WORK/load.json"
cat "$WORK/load.json" >&2
# wait until the buffer is drained (every chunk delivered and deleted)
while [[ -n "$(ls "$WORK/data/buffer/s3" 2>/dev/null)" ]]; do sleep 0.2; done
t1=$(date +%s.%N)
c=$(cpu)
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$FPID/status")
bytes=$(grep -o '"total_events":[0-9]*' "$WORK/load.json" | cut -d: -f2)
ebytes=$(grep -o '"event_bytes":[0-9.]*' "$WORK/load.json" | cut -d: -f2)
acked=$(grep -o '"mb_per_sec":[0-9.]*' "$WORK/load.json" | cut -d: -f2)
awk -v n="$bytes" -v eb="$ebytes" -v a="$t0" -v b="$t1" -v c="$c" -v h="$hwm" -v ack="$acked" -v lvl="$LEVEL" 'BEGIN {
  mb = n * eb / 1e6
  printf "| events | raw MB | acked MB/s (while sending) | delivered MB/s (until the buffer drained) | fuwa CPU s | fuwa CPU ms per raw MB | peak RSS |\n"
  printf "|---:|---:|---:|---:|---:|---:|---:|\n"
  printf "| %d | %.0f | %s | %.1f | %.2f | %.2f | %.1f MiB |\n", n, mb, ack, mb / (b - a), c, 1000 * c / mb, h / 1024
  printf "\ngzip level %s. At %.2f ms of fuwa CPU per raw MB, the 2 cores here could carry about %.0f MB/s of raw records.\n", lvl, 1000 * c / mb, 2 * 1000 / (1000 * c / mb)
}'
objects=$(AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$PYTHON" -c "
import boto3
c = boto3.client('s3', endpoint_url='http://127.0.0.1:$S3PORT', region_name='us-east-1')
n = 0
for p in c.get_paginator('list_objects_v2').paginate(Bucket='bench'):
    n += len(p.get('Contents', []))
print(n)")
echo "objects written: $objects"
