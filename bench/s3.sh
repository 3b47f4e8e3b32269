#!/usr/bin/env bash
# forward -> file buffer -> encoder -> S3 (a local moto server), once per
# object format, one fresh fuwa each: raw MB/s acked, fuwa's CPU per MB of
# raw records (and so MB/s of input per core), peak RSS, and the objects
# written (count, total and mean size).
#
#   PYTHON=/var/tmp/fuwa-ci/venv/bin/python bench/s3.sh
#
# PYTHON must have moto[server] and boto3 (tests/python/requirements.txt).
# moto is a Python server: it, not fuwa, limits the delivered MB/s here, so
# the number that tells whether encoding keeps up is fuwa's CPU time per MB
# of raw records (encoding runs on blocking threads, beside the uploads).
# Knobs: DURATION (10s), CONNECTIONS (2), BATCH (1000), NO_BUILD=1,
# FORMATS ("json-gzip parquet-snappy parquet-zstd"), LEVEL (gzip level of
# json-gzip, default 6), CHUNK (chunk_limit_size, default 64MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-2}
BATCH=${BATCH:-1000}
PYTHON=${PYTHON:-${FUWA_PYTHON:-python3}}
LEVEL=${LEVEL:-6}
CHUNK=${CHUNK:-64MiB}
PART=${PART:-5MiB}
FORMATS=${FORMATS:-json-gzip parquet-snappy parquet-zstd}
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -p fuwa -p fuwa-bench >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FUWA=$TARGET/release/fuwa
LOADGEN=$TARGET/release/fuwa-loadgen
WORK=$(mktemp -d /tmp/fuwa-s3bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

S3PORT=$("$LOADGEN" --free-port)
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$S3PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
"$LOADGEN" --port "$S3PORT" --wait-port 30s

echo "| format | events | raw MB | acked MB/s | fuwa CPU s | CPU ms per raw MB | MB/s of input per core | peak RSS | objects | object MB (all) | mean object MB | rows read back |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for f in $FORMATS; do
  bucket="bench-$f"
  "$PYTHON" "$ROOT/tests/python/s3_util.py" create-bucket "http://127.0.0.1:$S3PORT" "$bucket" us-east-1
  case $f in
    json-gzip) enc="compression = \"gzip\"
compression_level = $LEVEL"; ext=json.gz ;;
    parquet-snappy) enc='format = "parquet"
compression = "snappy"'; ext=parquet ;;
    parquet-zstd) enc='format = "parquet"
compression = "zstd"'; ext=parquet ;;
    *) echo "unknown format $f" >&2; exit 2 ;;
  esac
  PORT=$("$LOADGEN" --free-port)
  rm -rf "$WORK/data"
  cat >"$WORK/fuwa.toml" <<CFG
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
id = "s3"
type = "s3"
bucket = "$bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:$S3PORT"
force_path_style = true
key = "content_type=\${tag}/year=%Y/month=%m/day=%d/hour=%H/\${chunk_id}.$ext"
$enc
time_key = "time"
multipart_threshold = "$PART"
part_size = "$PART"
[output.buffer]
type = "file"
flush_interval = "1s"
flush_thread_count = 2
chunk_limit_size = "$CHUNK"
CFG
  bound=$(memory_bound_kib "$WORK/fuwa.toml")
  "$FUWA" run -c "$WORK/fuwa.toml" --data-dir "$WORK/data" >"$WORK/fuwa.log" 2>&1 &
  FPID=$!
  PIDS+=($FPID)
  "$LOADGEN" --port "$PORT" --wait-port 15s
  clk=$(getconf CLK_TCK)
  "$LOADGEN" --port "$PORT" --connections "$CONNECTIONS" --batch "$BATCH" --duration "$DURATION" \
    --warmup 0s --pid "$FPID" --json >"$WORK/load.json"
  # wait until the buffer is drained (every chunk delivered and deleted)
  while [[ -n "$(ls "$WORK/data/buffer/s3" 2>/dev/null)" ]]; do sleep 0.2; done
  c=$(awk -v t="$clk" '{ print ($14 + $15) / t }' "/proc/$FPID/stat")
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$FPID/status")
  kill "$FPID"; wait "$FPID" 2>/dev/null || true
  peak_vs_bound "forward → s3 $f (chunk $CHUNK, parts $PART)" "$hwm" "$bound"
  n=$(grep -o '"total_events":[0-9]*' "$WORK/load.json" | cut -d: -f2)
  eb=$(grep -o '"event_bytes":[0-9.]*' "$WORK/load.json" | cut -d: -f2)
  acked=$(grep -o '"mb_per_sec":[0-9.]*' "$WORK/load.json" | cut -d: -f2)
  objs=$("$PYTHON" -c "
import boto3
c = boto3.client('s3', endpoint_url='http://127.0.0.1:$S3PORT', region_name='us-east-1')
n = s = m = 0
for p in c.get_paginator('list_objects_v2').paginate(Bucket='$bucket'):
    for o in p.get('Contents', []):
        n += 1; s += o['Size']
        # a multipart upload's ETag ends in -<parts>
        m += '-' in o['ETag']
print(n, s, m)")
  # Parquet: DuckDB counts the rows of every object (all acked events must be there)
  rows=-
  if [[ $ext == parquet ]]; then
    rm -rf "$WORK/objs"; mkdir -p "$WORK/objs"
    "$PYTHON" "$ROOT/tests/python/s3_util.py" dump "http://127.0.0.1:$S3PORT" "$bucket" "$WORK/objs" >/dev/null
    rows=$("$PYTHON" "$ROOT/tests/python/parquet_check.py" "$WORK/objs/**/*.parquet" "SELECT count(*) FROM t" | tr -dc '0-9')
  fi
  awk -v f="$f" -v n="$n" -v eb="$eb" -v c="$c" -v h="$hwm" -v ack="$acked" -v objs="$objs" -v rows="$rows" 'BEGIN {
    split(objs, o, " ")
    mb = n * eb / 1e6
    ms = 1000 * c / mb
    printf "| %s | %d | %.0f | %s | %.2f | %.2f | %.0f | %.1f MiB | %d (%d multipart) | %.1f | %.2f | %s |\n", f, n, mb, ack, c, ms, 1000 / ms, h / 1024, o[1], o[3], o[2] / 1e6, (o[1] ? o[2] / 1e6 / o[1] : 0), rows
  }'
done
echo
echo "Events: fuwa-loadgen's records ($BATCH per PackedForward message, $CONNECTIONS connections, $DURATION); chunk_limit_size $CHUNK, multipart_threshold and part_size $PART; json-gzip at gzip level $LEVEL, Parquet zstd at level 3."
print_bounds
