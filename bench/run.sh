#!/usr/bin/env bash
# Reruns the forward benchmark: fuwa, and Fluent Bit when FLUENT_BIT is set.
#
#   bench/run.sh
#   FLUENT_BIT=/path/to/fluent-bit bench/run.sh
#
# Scenarios: forward -> null, forward -> file (JSON Lines in a temp dir),
# forward -> durable buffer -> null ("buffered": fuwa's file buffer, acked
# after fsync; Fluent Bit with storage.type filesystem and storage.sync full).
# Each: start the agent on a free 127.0.0.1 port, run fuwa-loadgen
# (PackedForward, 1000 events/message, 2 connections, acked), record
# events/s and the agent's VmHWM (peak RSS), stop the agent. Then fuwa's
# VmRSS with 100 idle connections. Prints a markdown table.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), CONNECTIONS (2),
# BATCH (1000), IDLE (100), FLUSH (1: flush interval in seconds, both agents),
# NO_BUILD=1 (use the existing release binaries), FUWA=/path/to/fuwa.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-2}
BATCH=${BATCH:-1000}
IDLE=${IDLE:-100}
FLUSH=${FLUSH:-1}
FLUENT_BIT=${FLUENT_BIT:-}

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p fuwa -p fuwa-bench >&2
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FUWA=${FUWA:-$TARGET/release/fuwa}
LOADGEN=$TARGET/release/fuwa-loadgen
if [[ -n "$FLUENT_BIT" && ! -x "$FLUENT_BIT" ]]; then
    echo "FLUENT_BIT=$FLUENT_BIT is not an executable" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/fuwa-bench.XXXXXX)
AGENT_PID=
cleanup() {
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

# json_field FILE KEY -> the number after "KEY": in a one-line JSON object
json_field() {
    grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2
}

# --- configs -----------------------------------------------------------------

fuwa_config() { # scenario port dir
    local src=$ROOT/conf/bench-forward-$1.toml
    sed -e "s|127.0.0.1:24224|127.0.0.1:$2|" \
        -e "s|/tmp/fuwa-bench/out|$3/out|" \
        -e "s|^flush_interval = .*|flush_interval = \"${FLUSH}s\"|" \
        "$src" >"$3/fuwa.toml"
    echo "$3/fuwa.toml"
}

fluentbit_config() { # scenario port dir
    local out storage_service="" storage_input="storage.type memory"
    case $1 in
        buffered) out="    Name         null
    Match        *"
              storage_service="    storage.path $3/fb-storage
    storage.sync full"
              storage_input="storage.type filesystem" ;;
        null) out="    Name         null
    Match        *" ;;
        file) mkdir -p "$3/out"
              out="    Name         file
    Match        *
    Path         $3/out
    Format       plain" ;;
    esac
    cat >"$3/fluent-bit.conf" <<EOF
[SERVICE]
    Flush        $FLUSH
    Grace        5
    Log_Level    warn
    HTTP_Server  off
$storage_service

[INPUT]
    Name         forward
    Listen       127.0.0.1
    Port         $2
    $storage_input

[OUTPUT]
$out
EOF
    echo "$3/fluent-bit.conf"
}

# --- agent lifecycle ---------------------------------------------------------

start_agent() { # agent scenario dir -> sets AGENT_PID, PORT
    local agent=$1 scenario=$2 dir=$3 cfg
    PORT=$("$LOADGEN" --free-port)
    case $agent in
        fuwa)
            cfg=$(fuwa_config "$scenario" "$PORT" "$dir")
            "$FUWA" run -c "$cfg" --data-dir "$dir/data" >"$dir/agent.log" 2>&1 &
            ;;
        fluent-bit)
            cfg=$(fluentbit_config "$scenario" "$PORT" "$dir")
            "$FLUENT_BIT" -c "$cfg" >"$dir/agent.log" 2>&1 &
            ;;
    esac
    AGENT_PID=$!
    if ! "$LOADGEN" --port "$PORT" --wait-port 15s; then
        echo "$agent did not start; its log:" >&2
        cat "$dir/agent.log" >&2
        exit 1
    fi
}

stop_agent() { # waits for a clean exit (flushes what is buffered)
    local i
    kill -TERM "$AGENT_PID"
    for i in $(seq 1 300); do
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$AGENT_PID" 2>/dev/null; then
        echo "agent $AGENT_PID did not stop in 30 s; killing it" >&2
        kill -KILL "$AGENT_PID" || true
    fi
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
}

# --- scenarios ---------------------------------------------------------------

declare -A EPS MBPS HWM P50 LINES ACKED IDLE_RSS IDLE_BEFORE WRITTEN_EPS

# prints the time the files under $1 last grew, once they have not grown for
# 2 flush intervals + 1 s
wait_files_settle() {
    local size last=-1 changed quiet
    changed=$(date +%s.%N)
    quiet=$(awk -v f="$FLUSH" 'BEGIN { print 2 * f + 1 }')
    while :; do
        size=$(stat -c %s "$1"/* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
        if [[ $size != "$last" ]]; then
            last=$size
            changed=$(date +%s.%N)
        elif awk -v a="$changed" -v b="$(date +%s.%N)" -v q="$quiet" 'BEGIN { exit !(b - a >= q) }'; then
            echo "$changed"
            return
        fi
        sleep 0.2
    done
}

run_scenario() { # agent scenario
    local agent=$1 scenario=$2 dir=$WORK/$1-$2 res
    mkdir -p "$dir"
    start_agent "$agent" "$scenario" "$dir"
    local bound=
    if [[ $agent == fuwa ]]; then bound=$(memory_bound_kib "$dir/fuwa.toml"); fi
    log "$agent forward -> $scenario: $DURATION (+$WARMUP warm-up) on port $PORT, pid $AGENT_PID"
    res=$dir/result.json
    local t0 t1
    t0=$(date +%s.%N)
    if ! "$LOADGEN" --port "$PORT" --connections "$CONNECTIONS" --batch "$BATCH" \
        --duration "$DURATION" --warmup "$WARMUP" --pid "$AGENT_PID" --json >"$res"; then
        echo "load generator failed against $agent; agent log:" >&2
        tail -20 "$dir/agent.log" >&2
        exit 1
    fi
    cat "$res" >&2
    if [[ $scenario == file ]]; then
        # sustained rate: until the files stop growing (what was acked is written)
        t1=$(wait_files_settle "$dir/out")
        WRITTEN_EPS[$agent/$scenario]=$(awk -v n="$(cat "$dir"/out/* 2>/dev/null | wc -l)" \
            -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    fi
    stop_agent
    local k=$agent/$scenario
    EPS[$k]=$(json_field "$res" events_per_sec)
    MBPS[$k]=$(json_field "$res" mb_per_sec)
    HWM[$k]=$(json_field "$res" vmhwm_kib)
    if [[ -n $bound ]]; then peak_vs_bound "forward → $scenario" "${HWM[$k]}" "$bound"; fi
    P50[$k]=$(json_field "$res" ack_p50_ms)
    ACKED[$k]=$(json_field "$res" total_events)
    if [[ $scenario == file ]]; then
        # every acked event must be in the files after a clean stop
        local lines acked=${ACKED[$k]}
        lines=$(cat "$dir"/out/* 2>/dev/null | wc -l)
        LINES[$k]=$lines
        if (( lines < acked )); then
            echo "WARNING: $agent wrote $lines lines for $acked acked events" >&2
        fi
        rm -rf "$dir/out"
    fi
}

run_idle() { # agent
    local agent=$1 dir=$WORK/$1-idle
    mkdir -p "$dir"
    start_agent "$agent" null "$dir"
    local bound=
    if [[ $agent == fuwa ]]; then bound=$(memory_bound_kib "$dir/fuwa.toml"); fi
    log "$agent: $IDLE idle connections, pid $AGENT_PID"
    "$LOADGEN" --port "$PORT" --idle-connections "$IDLE" --hold 2s --pid "$AGENT_PID" --json \
        >"$dir/result.json"
    cat "$dir/result.json" >&2
    stop_agent
    IDLE_RSS[$agent]=$(json_field "$dir/result.json" vmrss_kib)
    if [[ -n $bound ]]; then peak_vs_bound "forward, $IDLE idle connections" "$(json_field "$dir/result.json" vmhwm_kib)" "$bound"; fi
    IDLE_BEFORE[$agent]=$(json_field "$dir/result.json" vmrss_before_kib)
}

AGENTS=(fuwa)
[[ -n "$FLUENT_BIT" ]] && AGENTS+=(fluent-bit)
for a in "${AGENTS[@]}"; do
    for s in null file buffered; do
        run_scenario "$a" "$s"
    done
    run_idle "$a"
done

# --- report ------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }

FB_VERSION=
[[ -n "$FLUENT_BIT" ]] && FB_VERSION=$("$FLUENT_BIT" --version 2>/dev/null | head -1)
echo
echo "fuwa $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')${FB_VERSION:+ vs $FB_VERSION}," \
    "$(nproc) CPUs, $CONNECTIONS connections × 1 message in flight, $BATCH events/message," \
    "$DURATION measured after $WARMUP warm-up, flush interval ${FLUSH}s"
echo
echo "| scenario | agent | acked events/s | MB/s | ack p50 ms | peak RSS (VmHWM) | written events/s (sustained) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for s in null file buffered; do
    for a in "${AGENTS[@]}"; do
        k=$a/$s
        w="-"
        [[ $s == file ]] && w=$(thousands "${WRITTEN_EPS[$k]}")
        label=$s
        [[ $s == buffered ]] && label="durable buffer (fsync) → null"
        echo "| forward → $label | $a | $(thousands "${EPS[$k]}") | ${MBPS[$k]} | ${P50[$k]} | $(mib "${HWM[$k]}") MiB | $w |"
    done
    if [[ -n "$FLUENT_BIT" ]]; then
        w=""
        [[ $s == file ]] && w="**$(ratio "${WRITTEN_EPS[fuwa/$s]}" "${WRITTEN_EPS[fluent-bit/$s]}")**"
        echo "| forward → $label | **fuwa / Fluent Bit** | **$(ratio "${EPS[fuwa/$s]}" "${EPS[fluent-bit/$s]}")** | | | $(ratio "${HWM[fuwa/$s]}" "${HWM[fluent-bit/$s]}") | $w |"
    fi
done
echo
echo "| $IDLE idle connections | VmRSS before | VmRSS with them open |"
echo "|---|---:|---:|"
for a in "${AGENTS[@]}"; do
    echo "| $a | $(mib "${IDLE_BEFORE[$a]}") MiB | $(mib "${IDLE_RSS[$a]}") MiB |"
done
for a in "${AGENTS[@]}"; do
    k=$a/file
    echo
    echo "$a forward → file: ${LINES[$k]} lines written for ${ACKED[$k]} acked events."
done

# the project's targets
ok() { awk "BEGIN { exit !($1) }" && echo "met" || echo "MISSED"; }
echo
echo "Targets: peak RSS < 120 MiB: null $(ok "${HWM[fuwa/null]} < 120 * 1024"), file $(ok "${HWM[fuwa/file]} < 120 * 1024");" \
    "< 50 MiB with $IDLE idle connections: $(ok "${IDLE_RSS[fuwa]} < 50 * 1024")"
echo "Target: durable buffer peak RSS < 120 MiB: $(ok "${HWM[fuwa/buffered]} < 120 * 1024")"
if [[ -n "$FLUENT_BIT" ]]; then
    echo "Target: forward → null ≥ 1.5× Fluent Bit: $(ok "${EPS[fuwa/null]} >= 1.5 * ${EPS[fluent-bit/null]}")"
    echo "Target: forward → durable buffer → null ≥ 1.5× Fluent Bit (storage.sync full): $(ok "${EPS[fuwa/buffered]} >= 1.5 * ${EPS[fluent-bit/buffered]}")"
fi
print_bounds
