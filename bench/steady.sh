#!/usr/bin/env bash
# Steady-load cost: what an agent beside an application takes from it at a
# modest, steady rate (issue 13), fuwa against Fluent Bit in the same run.
#
#   FLUENT_BIT=/path/to/fluent-bit bench/steady.sh
#   LOADS="tail20k forward" ROUNDS=3 NO_BUILD=1 bench/steady.sh
#
# Loads (fuwa-steady, bench/src/steady.rs, generates them; every event has a
# "seq" and `fuwa-steady check` proves each one reached the output files):
# - tail20k / tail2k: ~512-byte JSON lines appended at 20,000 / 2,000
#   lines/s in 10 ms steps for DURATION seconds; the agent tails the file
#   (from its head), parses JSON, writes one line per record to a file.
# - forward: 10,000 events/s as a logging library sends them: 4 keep-alive
#   connections, a Forward-mode message of 25 events every 10 ms on each,
#   acks on (the next message waits for the ack of the last) → file output.
# - http: 1,000 requests/s, one ~300-byte JSON event per POST, 4 keep-alive
#   connections → file output.
# fuwa runs with its default durable file buffer (BUFFER=memory to compare),
# Fluent Bit with its default memory buffer; both flush every FLUSH second(s)
# and write JSON lines of the record (fuwa `file` output, Fluent Bit `file`
# with `Format plain`).
# Per agent and load: CPU seconds (utime + stime from /proc/PID/stat) from
# the moment the load starts until the check saw every event in the output,
# peak RSS (VmHWM, bench/lib.sh) at that moment, and RSS when idle before
# the load. Agents alternate per load (fuwa, then Fluent Bit), so both see
# the same machine; compare the ratios, not the absolute figures.
#
# floor: with FLOOR=1 (the default) the forward and HTTP loads also run
# against `fuwa-steady floor` (bench/src/steady/floor.rs), a server that only
# reads each message and answers it: its CPU is what the kernel takes for the
# load's sockets and wake-ups alone, the part of any agent's CPU that no agent
# can save.
# Knobs (environment): LOADS ("tail20k tail2k forward http"), ROUNDS (1),
# DURATION (20 s), FLUSH (1 s), BUFFER (file), NO_BUILD=1, FUWA=/path,
# FLUENT_BIT, KEEP=1 (keep the work dir), FUWA_ENV (extra environment for
# fuwa, e.g. "FUWA_WORKER_THREADS=1"), COMMIT_WINDOW (the file buffer's
# commit_window, 0s), FLOOR (1; 0 skips the floor runs).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
LOADS=${LOADS:-"tail20k tail2k forward http"}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-20}
FLUSH=${FLUSH:-1}
BUFFER=${BUFFER:-file}
FLUENT_BIT=${FLUENT_BIT:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FUWA_ENV=${FUWA_ENV:-}
FLOOR=${FLOOR:-1}
COMMIT_WINDOW=${COMMIT_WINDOW:-0s}

if [[ -z "${NO_BUILD:-}" && -z "${FUWA:-}" ]]; then
    cargo build --release -p fuwa -p fuwa-bench --bin fuwa --bin fuwa-steady >&2
fi
FUWA=${FUWA:-$TARGET/release/fuwa}
STEADY=$TARGET/release/fuwa-steady
for b in "$FUWA" "$STEADY"; do
    [[ -x "$b" ]] || { echo "$b is missing (build without NO_BUILD)" >&2; exit 2; }
done
if [[ -n "$FLUENT_BIT" && ! -x "$FLUENT_BIT" ]]; then
    echo "FLUENT_BIT=$FLUENT_BIT is not an executable" >&2
    exit 2
fi

WORK=$(mktemp -d /var/tmp/fuwa-bench-steady.XXXXXX)
AGENT_PID=
cleanup() {
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

read -r l1 l5 l15 _ </proc/loadavg
LOAD_BEFORE="$l1 $l5 $l15"

# load parameters: kind rate
declare -A KIND=([tail20k]=tail [tail2k]=tail [forward]=forward [http]=http)
declare -A RATE=([tail20k]=20000 [tail2k]=2000 [forward]=10000 [http]=1000)
declare -A UNIT=([tail20k]="lines/s" [tail2k]="lines/s" [forward]="events/s" [http]="requests/s")

fuwa_config() { # kind dir port
    local kind=$1 dir=$2 port=$3
    cat <<EOF
[agent]
data_dir = "$dir/data"
log_level = "info"

[[input]]
EOF
    case $kind in
        tail) cat <<EOF
type = "tail"
path = "$dir/app.log"
tag = "bench.tail"
read_from_head = true
format = "json"
EOF
            ;;
        forward) printf 'type = "forward"\nbind = "127.0.0.1:%s"\n' "$port" ;;
        http) printf 'type = "http"\nbind = "127.0.0.1:%s"\n' "$port" ;;
    esac
    cat <<EOF

[[output]]
match = "**"
type = "file"
path = "$dir/out/\${tag}.jsonl"
[output.buffer]
type = "$BUFFER"
flush_interval = "${FLUSH}s"
EOF
    [[ $BUFFER == file ]] && echo "commit_window = \"$COMMIT_WINDOW\""
    return 0
}

fb_config() { # kind dir port
    local kind=$1 dir=$2 port=$3
    cat <<EOF
[SERVICE]
    Flush        $FLUSH
    Grace        5
    Log_Level    info
    HTTP_Server  off
    Parsers_File $dir/parsers.conf

[INPUT]
EOF
    case $kind in
        tail) cat <<EOF
    Name             tail
    Path             $dir/app.log
    Tag              bench.tail
    Read_from_Head   On
    Parser           bench_json
EOF
            ;;
        forward) printf '    Name   forward\n    Listen 127.0.0.1\n    Port   %s\n' "$port" ;;
        http) printf '    Name   http\n    Listen 127.0.0.1\n    Port   %s\n' "$port" ;;
    esac
    cat <<EOF

[OUTPUT]
    Name   file
    Match  *
    Path   $dir/out
    Format plain
EOF
}

declare -A CPU PEAK IDLE CHECK LATE
run_one() { # agent load round
    local agent=$1 load=$2 round=$3 kind=${KIND[$2]} rate=${RATE[$2]}
    local dir=$WORK/$agent-$load-$round port= t0 t1 out total
    total=$(awk -v r="$rate" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
    mkdir -p "$dir/out"
    : >"$dir/app.log"
    [[ $kind != tail && $agent != floor ]] && port=$(free_port)
    if [[ $agent == floor ]]; then
        "$STEADY" floor --kind "$kind" >"$dir/port" 2>"$dir/agent.log" &
        AGENT_PID=$!
        local w=0
        until [[ -s $dir/port ]]; do
            kill -0 "$AGENT_PID" 2>/dev/null || { echo "the floor server died" >&2; exit 1; }
            ((++w < 500)) || { echo "the floor server printed no port" >&2; exit 1; }
            sleep 0.01
        done
        port=$(head -1 "$dir/port")
    elif [[ $agent == fuwa ]]; then
        fuwa_config "$kind" "$dir" "$port" >"$dir/fuwa.toml"
        env $FUWA_ENV "$FUWA" run -c "$dir/fuwa.toml" --data-dir "$dir/data" 2>"$dir/agent.log" &
        AGENT_PID=$!
        if [[ $kind == tail ]]; then wait_log "$dir/agent.log" "tail input started" "$AGENT_PID"; fi
    else
        printf '[PARSER]\n    Name   bench_json\n    Format json\n' >"$dir/parsers.conf"
        fb_config "$kind" "$dir" "$port" >"$dir/fluent-bit.conf"
        "$FLUENT_BIT" -c "$dir/fluent-bit.conf" >"$dir/agent.log" 2>&1 &
        AGENT_PID=$!
        wait_log "$dir/agent.log" "Shutdown Grace Period" "$AGENT_PID"
    fi
    [[ -n $port ]] && wait_port "$port" "$AGENT_PID"
    sleep 1 # settle: start-up work is not the steady cost
    local k=$agent/$load/$round
    IDLE[$k]=$(rss_kib "$AGENT_PID")
    t0=$(cpu_ticks "$AGENT_PID")
    log "$agent $load round $round: ${rate} ${UNIT[$load]} for ${DURATION}s (pid $AGENT_PID)"
    case $kind in
        tail) out=$("$STEADY" tail --path "$dir/app.log" --rate "$rate" --duration "$DURATION") ;;
        forward) out=$("$STEADY" forward --addr "127.0.0.1:$port" --rate "$rate" --duration "$DURATION") ;;
        http) out=$("$STEADY" http --addr "127.0.0.1:$port" --rate "$rate" --duration "$DURATION") ;;
    esac
    LATE[$k]=$(sed -E 's/.*"late_steps":([0-9]+).*/\1/' <<<"$out")
    if [[ $agent == floor ]]; then
        # nothing written to check: every message must have been answered
        CHECK[$k]=$out
        grep -q "\"errors\":0," <<<"$out" || { echo "floor $load: not every message was answered: $out" >&2; exit 1; }
    elif ! CHECK[$k]=$("$STEADY" check --dir "$dir/out" --expect "$total" --timeout 60); then
        echo "$agent $load: the output is incomplete: ${CHECK[$k]}" >&2
        tail -20 "$dir/agent.log" >&2
        exit 1
    fi
    t1=$(cpu_ticks "$AGENT_PID")
    PEAK[$k]=$(peak_rss_kib "$AGENT_PID")
    if [[ $agent == fuwa ]]; then
        peak_vs_bound "steady $load, round $round" "${PEAK[$k]}" "$(memory_bound_kib "$dir/fuwa.toml")"
    fi
    CPU[$k]=$((t1 - t0))
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
    log "$agent $load: CPU $(ticks_s "${CPU[$k]}") s, peak RSS $(mib "${PEAK[$k]}") MiB (idle $(mib "${IDLE[$k]}") MiB), writer: $out, check: ${CHECK[$k]}"
    [[ -n "${KEEP:-}" ]] || rm -rf "$dir"
}

AGENTS=fuwa
[[ -n $FLUENT_BIT ]] && AGENTS="fuwa fluent-bit"
[[ $FLOOR == 1 ]] && AGENTS="$AGENTS floor"
agents_of() { # load: the agents that run it (the floor only serves sockets)
    local a
    for a in $AGENTS; do
        [[ $a == floor && ${KIND[$1]} == tail ]] || echo "$a"
    done
}
for round in $(seq 1 "$ROUNDS"); do
    for load in $LOADS; do
        for agent in $(agents_of "$load"); do
            run_one "$agent" "$load" "$round"
        done
    done
done

# --- report ------------------------------------------------------------------

FB_VERSION=
[[ -n "$FLUENT_BIT" ]] && FB_VERSION=$("$FLUENT_BIT" --version 2>/dev/null | head -1)
echo
echo "fuwa $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') (buffer = $BUFFER, commit_window = $COMMIT_WINDOW${FUWA_ENV:+, $FUWA_ENV})${FB_VERSION:+ vs $FB_VERSION}," \
    "$(nproc) CPUs, load average before: $LOAD_BEFORE; ${DURATION}s per load, flush ${FLUSH}s"
echo
echo "| load | round | agent | CPU s | peak RSS MiB | idle RSS MiB | late steps | CPU fuwa/FB | peak RSS fuwa/FB |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
    for load in $LOADS; do
        for agent in $(agents_of "$load"); do
            k=$agent/$load/$round f=fuwa/$load/$round b=fluent-bit/$load/$round
            r1= r2=
            if [[ $agent == fluent-bit ]]; then
                r1="**$(ratio "${CPU[$f]}" "${CPU[$b]}")**"
                r2="**$(ratio "${PEAK[$f]}" "${PEAK[$b]}")**"
            elif [[ $agent == floor && -n $FLUENT_BIT ]]; then
                r1="(floor $(ratio "${CPU[$k]}" "${CPU[$b]}"))"
            fi
            echo "| $load (${RATE[$load]} ${UNIT[$load]}) | $round | $agent | $(ticks_s "${CPU[$k]}") | $(mib "${PEAK[$k]}") | $(mib "${IDLE[$k]}") | ${LATE[$k]} | $r1 | $r2 |"
        done
    done
done
if [[ -n $FLUENT_BIT ]]; then
    echo
    echo "Goal (issue 13): CPU ≤ 0.25× and peak RSS ≤ 0.5× Fluent Bit's at every load:"
    for round in $(seq 1 "$ROUNDS"); do
        for load in $LOADS; do
            f=fuwa/$load/$round b=fluent-bit/$load/$round
            c=$(awk -v a="${CPU[$f]}" -v b="${CPU[$b]}" 'BEGIN { print (b > 0 && a <= 0.25 * b) ? "met" : "MISSED" }')
            m=$(awk -v a="${PEAK[$f]}" -v b="${PEAK[$b]}" 'BEGIN { print (b > 0 && a <= 0.5 * b) ? "met" : "MISSED" }')
            fl=
            [[ -n ${CPU[floor/$load/$round]:-} ]] &&
                fl=" (a server that only reads and answers: $(ratio "${CPU[floor/$load/$round]}" "${CPU[$b]}") of Fluent Bit's CPU)"
            echo "  $load round $round: CPU $(ratio "${CPU[$f]}" "${CPU[$b]}") $c, peak RSS $(ratio "${PEAK[$f]}" "${PEAK[$b]}") $m$fl"
        done
    done
fi
print_bounds
