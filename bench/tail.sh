#!/usr/bin/env bash
# The tail benchmark: read a 1,000,000-line JSON file from its head into the
# null output, fuwa and (when FLUENT_BIT is set) Fluent Bit; and fuwa into
# JSON Lines files through its durable file buffer.
#
#   bench/tail.sh
#   FLUENT_BIT=/path/to/fluent-bit bench/tail.sh
#
# The file (access-log-like JSON objects, ~217 bytes a line, deterministic)
# is generated once into a temp dir and is in the page cache for every run.
# - fuwa: conf/bench-tail-null.toml (read_from_head, memory buffer, null
#   output), with format = "json" and then format = "none". The clock starts
#   when the process is launched and stops when the positions file
#   (<data_dir>/tail/tail.0.json, saved after each batch is accepted by the
#   output's buffer) shows offset == file size. Start-up ends at the log line
#   "tail input started".
# - fuwa tail -> file: conf/bench-tail-file.toml (format = "json", the file
#   buffer: each batch fsynced before the position moves, then the file
#   output writes JSON Lines). The clock stops when the output has written
#   every line (fuwa_output_proc_records_total on /metrics, read with curl
#   once the positions file shows the end of the input); after the stop the
#   output is checked: as many lines as the input, and the same bytes.
# - Fluent Bit: in_tail with Read_from_Head On and Exit_On_Eof On, the json
#   parser (a [PARSER] with Format json) and then no parser, into out_null.
#   Two ends are recorded: when it logs "<file> ended, stop" (EOF: every line
#   read and in its buffer, like fuwa's end) and when the process exits
#   (after its shutdown, which flushes to null and waits for its 1 s timer).
#   Then Fluent Bit tail -> file (json parser, memory buffer, `file` output
#   with Format plain): its exit is when every line is written (checked).
#   Start-up ends at its "[engine] Shutdown Grace Period" line.
# Every 20 ms the script reads the agent's /proc/PID/status (peak RSS is the
# max of VmHWM and VmRSS seen) and /proc/PID/stat (CPU time), the positions
# file and the log, with bash builtins only (no process forked per poll
# while the input is read).
# Prints a markdown table and whether the targets are met.
#
# Knobs (environment): LINES (1000000), TIMEOUT (300 s per run), FLUSH (1:
# flush interval in seconds, every agent and scenario),
# NO_BUILD=1 (use the existing target/release/fuwa), FUWA=/path/to/fuwa
# (use that binary, no build), FLUENT_BIT.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
LINES=${LINES:-1000000}
TIMEOUT=${TIMEOUT:-300}
FLUSH=${FLUSH:-1}
FLUENT_BIT=${FLUENT_BIT:-}

FUWA=${FUWA:-}
if [[ -z "$FUWA" ]]; then
    if [[ -z "${NO_BUILD:-}" ]]; then
        cargo build --release -p fuwa >&2
    fi
    FUWA=$ROOT/target/release/fuwa
fi
if [[ ! -x "$FUWA" ]]; then
    echo "FUWA=$FUWA is not an executable" >&2
    exit 2
fi
if [[ -n "$FLUENT_BIT" && ! -x "$FLUENT_BIT" ]]; then
    echo "FLUENT_BIT=$FLUENT_BIT is not an executable" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "python3 is needed to generate the file" >&2; exit 2; }

WORK=$(mktemp -d /tmp/fuwa-bench-tail.XXXXXX)
AGENT_PID=
cleanup() {
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

# nap SECONDS: sleep without forking (read with a timeout from a pipe that
# nobody writes to)
exec {NAP_FD}<> <(:)
nap() { read -r -t "$1" -u "$NAP_FD" _ || true; }

# --- the file ----------------------------------------------------------------

DATA=$WORK/access.log
log "generating $LINES lines into $DATA"
python3 - "$LINES" >"$DATA" <<'EOF'
import sys
n = int(sys.argv[1])
USERS = ("alice", "bob", "carol", "dave")
METHODS = ("GET", "POST", "PUT", "DELETE")
CODES = (200, 201, 204, 301, 404, 500)
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/2.0",
          "python-requests/2.31")
x, mask, out = 88172645463325252, (1 << 64) - 1, []
for i in range(n):
    x = (x * 6364136223846793005 + 1442695040888963407) & mask  # 64-bit LCG
    r = x >> 11
    out.append('{"host":"10.%d.%d.%d","user":"%s","method":"%s",'
               '"path":"/api/v1/items/%d?page=%d","code":%d,"size":%d,'
               '"referer":"https://example.com/p/%d","agent":"%s","request_id":"%016x"}\n' % (
        r & 255, (r >> 8) & 255, 1 + (r >> 16) % 254, USERS[(r >> 24) & 3],
        METHODS[(r >> 26) & 3], (r >> 28) % 100000, (r >> 45) % 50, CODES[i % 6],
        100 + (x >> 20) % 50000, (x >> 7) % 10000, AGENTS[(x >> 40) & 3], x))
    if len(out) == 10000:
        sys.stdout.write("".join(out))
        out = []
sys.stdout.write("".join(out))
EOF
SIZE=$(stat -c %s "$DATA")
log "$(awk -v s="$SIZE" -v n="$LINES" 'BEGIN { printf "%d bytes, %.1f bytes/line", s, s / n }')"

# --- polling -----------------------------------------------------------------

# poll_proc PID: updates PEAK_KIB (max of VmHWM/VmRSS), CPU_TICKS and STATE;
# returns 1 once the process is gone or a zombie
poll_proc() {
    local k v _ st
    STATE=
    if ! { while read -r k v _; do
               case $k in
                   State:) STATE=$v ;;
                   VmHWM:|VmRSS:) (( v > PEAK_KIB )) && PEAK_KIB=$v ;;
               esac
           done </proc/"$1"/status; } 2>/dev/null; then
        return 1
    fi
    if { read -r -a st </proc/"$1"/stat; } 2>/dev/null && [[ ${st[2]} != Z ]]; then
        CPU_TICKS=$(( st[13] + st[14] ))
    fi
    [[ $STATE != Z ]]
}

# log_has FILE TEXT: is TEXT in FILE (a short log; read with builtins)
log_has() {
    local l
    { while IFS= read -r l; do
          [[ $l == *"$2"* ]] && return 0
      done <"$1"; } 2>/dev/null
    return 1
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

declare -A T_END T_READ T_EXIT T_EOF PEAK CPU CHECK

read -r l1 l5 l15 _ </proc/loadavg
LOAD_BEFORE="$l1 $l5 $l15"
if pgrep -x 'rustc|cargo|cc1' >/dev/null; then
    echo "WARNING: a compiler is running on this $(nproc)-CPU machine; the numbers will be low" >&2
fi

# --- fuwa --------------------------------------------------------------------

# written_records PORT: fuwa_output_proc_records_total of the file output
written_records() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '/^fuwa_output_proc_records_total\{/ && /id="file.0"/ { n = $NF } END { print n + 0 }'
}

run_fuwa() { # format [null|file]
    local fmt=$1 out=${2:-null} pos line t0 now started= done= read_end= offset=0 port=
    local dir=$WORK/fuwa-$fmt-$out
    mkdir -p "$dir"
    [[ $out == file ]] &&
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # the input's path, the file output's directory and the API port (the
    # last two are only in the file config)
    sed -e "s|^data_dir = .*|data_dir = \"$dir/data\"|" \
        -e "s|^path = \".*access.log\"|path = \"$DATA\"|" \
        -e "s|^path = \".*/out/|path = \"$dir/out/|" \
        -e "s|^bind = .*|bind = \"127.0.0.1:$port\"|" \
        -e "s|^format = .*|format = \"$fmt\"|" \
        -e "s|^flush_interval = .*|flush_interval = \"${FLUSH}s\"|" \
        "$ROOT/conf/bench-tail-$out.toml" >"$dir/fuwa.toml"
    pos=$dir/data/tail/tail.0.json
    local bound
    bound=$(memory_bound_kib "$dir/fuwa.toml")
    PEAK_KIB=0 CPU_TICKS=0
    t0=$EPOCHREALTIME
    "$FUWA" run -c "$dir/fuwa.toml" --data-dir "$dir/data" 2>"$dir/agent.log" &
    AGENT_PID=$!
    log "fuwa tail (format = $fmt) -> $out, pid $AGENT_PID"
    while :; do
        now=$EPOCHREALTIME
        if ! poll_proc "$AGENT_PID"; then
            echo "fuwa exited; its log:" >&2
            cat "$dir/agent.log" >&2
            exit 1
        fi
        if [[ -z $started ]] && log_has "$dir/agent.log" "tail input started"; then
            started=$now
        fi
        # one line without a newline at its end: read's status is 1
        line=
        { read -r line <"$pos"; } 2>/dev/null || true
        if [[ -z $read_end && $line =~ \"offset\":([0-9]+) ]]; then
            offset=${BASH_REMATCH[1]}
            if (( offset == SIZE )); then
                read_end=$now
            fi
        fi
        if [[ -n $read_end ]]; then
            if [[ $out == null ]] || (( $(written_records "$port") >= LINES )); then
                done=$now
                break
            fi
        fi
        if awk -v a="$t0" -v b="$now" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            echo "fuwa did not reach the end of the file in ${TIMEOUT}s (offset $offset of $SIZE)" >&2
            exit 1
        fi
        nap 0.02
    done
    poll_proc "$AGENT_PID" || true
    kill -TERM "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
    if log_has "$dir/agent.log" "lines needing attention"; then
        echo "WARNING: fuwa reported lines it could not parse:" >&2
        grep "lines needing attention" "$dir/agent.log" | head -3 >&2
    fi
    local k=fuwa/$fmt
    if [[ $out == file ]]; then
        k=fuwa/file
        local lines bytes
        if cmp -s "$DATA" <(cat "$dir"/out/*.jsonl); then
            CHECK[$k]="$LINES lines, byte for byte the input"
        else
            read -r lines bytes < <(cat "$dir"/out/*.jsonl | wc -lc)
            if (( lines != LINES )); then
                echo "fuwa wrote $lines lines for $LINES" >&2
                exit 1
            fi
            CHECK[$k]="$lines lines, $bytes bytes (the input: $SIZE)"
        fi
        log "fuwa file output: ${CHECK[$k]}"
        T_EOF[$k]=$(secs "$t0" "$read_end")
    fi
    T_END[$k]=$(secs "$t0" "$done")
    T_READ[$k]=$(secs "${started:-$t0}" "$done")
    PEAK[$k]=$PEAK_KIB
    CPU[$k]=$CPU_TICKS
    peak_vs_bound "tail ($fmt) → $out" "$PEAK_KIB" "$bound"
    log "fuwa $fmt: ${T_END[$k]} s from launch, ${T_READ[$k]} s after start-up, peak RSS $PEAK_KIB KiB"
}

# --- Fluent Bit --------------------------------------------------------------

run_fluentbit() { # json | none [file]
    local fmt=$1 out=${2:-null} dir=$WORK/fb-$1-${2:-null} t0 now started= eof= exited= rc=0 parser=
    mkdir -p "$dir"
    cat >"$dir/parsers.conf" <<EOF
[PARSER]
    Name   bench_json
    Format json
EOF
    [[ $fmt == json ]] && parser="Parser           bench_json"
    cat >"$dir/fluent-bit.conf" <<EOF
[SERVICE]
    Flush        $FLUSH
    Grace        5
    Log_Level    info
    HTTP_Server  off
    Parsers_File $dir/parsers.conf

[INPUT]
    Name             tail
    Path             $DATA
    Tag              bench
    Read_from_Head   On
    Exit_On_Eof      On
    $parser

EOF
    if [[ $out == file ]]; then
        mkdir -p "$dir/out"
        printf '[OUTPUT]\n    Name   file\n    Match  *\n    Path   %s\n    Format plain\n' "$dir/out" >>"$dir/fluent-bit.conf"
    else
        printf '[OUTPUT]\n    Name   null\n    Match  *\n' >>"$dir/fluent-bit.conf"
    fi
    PEAK_KIB=0 CPU_TICKS=0
    t0=$EPOCHREALTIME
    "$FLUENT_BIT" -c "$dir/fluent-bit.conf" >"$dir/agent.log" 2>&1 &
    AGENT_PID=$!
    log "Fluent Bit tail ($([[ -n $parser ]] && echo "json parser" || echo "no parser")) -> $out, pid $AGENT_PID"
    while :; do
        now=$EPOCHREALTIME
        if ! poll_proc "$AGENT_PID"; then
            exited=$now
            break
        fi
        if [[ -z $started ]] && log_has "$dir/agent.log" "Shutdown Grace Period"; then
            started=$now
        fi
        if [[ -z $eof ]] && log_has "$dir/agent.log" "ended, stop"; then
            eof=$now
        fi
        if awk -v a="$t0" -v b="$now" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            echo "Fluent Bit did not exit in ${TIMEOUT}s" >&2
            exit 1
        fi
        nap 0.02
    done
    wait "$AGENT_PID" || rc=$?
    AGENT_PID=
    # an "ended, stop" written in the last poll interval
    [[ -z $eof ]] && log_has "$dir/agent.log" "ended, stop" && eof=$exited
    if (( rc != 0 )) || [[ -z $eof ]]; then
        echo "Fluent Bit did not read the file to its end (exit status $rc); its log:" >&2
        tail -20 "$dir/agent.log" >&2
        exit 1
    fi
    local k=fluent-bit/$fmt
    if [[ $out == file ]]; then
        k=fluent-bit/file
        local lines
        lines=$(cat "$dir"/out/* | wc -l)
        if (( lines != LINES )); then
            echo "Fluent Bit wrote $lines lines for $LINES" >&2
            exit 1
        fi
        CHECK[$k]="$lines lines"
    fi
    T_END[$k]=$(secs "$t0" "$eof")
    T_READ[$k]=$(secs "${started:-$t0}" "$eof")
    T_EXIT[$k]=$(secs "$t0" "$exited")
    PEAK[$k]=$PEAK_KIB
    CPU[$k]=$CPU_TICKS
    log "Fluent Bit $fmt: EOF ${T_END[$k]} s from launch (${T_READ[$k]} s after start-up), exit ${T_EXIT[$k]} s, peak RSS $PEAK_KIB KiB"
}

run_fuwa json
run_fuwa none
run_fuwa json file
if [[ -n "$FLUENT_BIT" ]]; then
    run_fluentbit json
    run_fluentbit none
    run_fluentbit json file
fi

# --- report ------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }
lps() { awk -v n="$LINES" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
mbps() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.1f", s / 1e6 / t }'; }
cpu() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f s", t / hz }'; }

FB_VERSION=
[[ -n "$FLUENT_BIT" ]] && FB_VERSION=$("$FLUENT_BIT" --version 2>/dev/null | head -1)
echo
FUWA_LABEL="fuwa $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
[[ $FUWA != "$ROOT/target/release/fuwa" ]] && FUWA_LABEL="fuwa ($FUWA)"
echo "$FUWA_LABEL${FB_VERSION:+ vs $FB_VERSION}," \
    "$(nproc) CPUs, load average before the runs: $LOAD_BEFORE;" \
    "$(thousands "$LINES") lines, $(thousands "$SIZE") bytes ($(awk -v s="$SIZE" -v n="$LINES" 'BEGIN { printf "%.0f", s / n }') bytes/line), read from the page cache, into null"
echo
echo "| agent | parsing | measured until | seconds from launch | lines/s | MB/s | lines/s after start-up | peak RSS (VmHWM) | CPU time |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for f in json none; do
    k=fuwa/$f
    echo "| fuwa | \`format = \"$f\"\` | positions offset = file size | ${T_END[$k]} | $(thousands "$(lps "${T_END[$k]}")") |" \
        "$(mbps "${T_END[$k]}") | $(thousands "$(lps "${T_READ[$k]}")") | $(mib "${PEAK[$k]}") MiB | $(cpu "${CPU[$k]}") |"
done
k=fuwa/file
echo "| fuwa → file (file buffer, fsync) | \`format = \"json\"\` | every line written (input read at ${T_EOF[$k]} s) | ${T_END[$k]} |" \
    "$(thousands "$(lps "${T_END[$k]}")") | $(mbps "${T_END[$k]}") | $(thousands "$(lps "${T_READ[$k]}")") | $(mib "${PEAK[$k]}") MiB | $(cpu "${CPU[$k]}") |"
if [[ -n "$FLUENT_BIT" ]]; then
    for f in json none; do
        k=fluent-bit/$f
        p="json parser"
        [[ $f == none ]] && p="no parser"
        echo "| Fluent Bit | $p | EOF (\"ended, stop\" logged) | ${T_END[$k]} | $(thousands "$(lps "${T_END[$k]}")") |" \
            "$(mbps "${T_END[$k]}") | $(thousands "$(lps "${T_READ[$k]}")") | $(mib "${PEAK[$k]}") MiB | $(cpu "${CPU[$k]}") |"
        echo "| Fluent Bit | $p | exit (Exit_On_Eof) | ${T_EXIT[$k]} | $(thousands "$(lps "${T_EXIT[$k]}")") |" \
            "$(mbps "${T_EXIT[$k]}") | | | |"
    done
    for f in json none; do
        a=fuwa/$f b=fluent-bit/$f
        echo "| **fuwa / Fluent Bit** | $f | Fluent Bit's EOF | | **$(ratio "${T_END[$b]}" "${T_END[$a]}")** | |" \
            "$(ratio "${T_READ[$b]}" "${T_READ[$a]}") | $(ratio "${PEAK[$a]}" "${PEAK[$b]}") | $(ratio "${CPU[$a]}" "${CPU[$b]}") |"
        echo "| **fuwa / Fluent Bit** | $f | Fluent Bit's exit | | **$(ratio "${T_EXIT[$b]}" "${T_END[$a]}")** | | | | |"
    done
    k=fluent-bit/file
    echo "| Fluent Bit → file (memory buffer) | json parser | exit (Exit_On_Eof: every line written) | ${T_EXIT[$k]} | $(thousands "$(lps "${T_EXIT[$k]}")") |" \
        "$(mbps "${T_EXIT[$k]}") | | $(mib "${PEAK[$k]}") MiB | $(cpu "${CPU[$k]}") |"
    echo "| **fuwa → file / Fluent Bit → file** | json | every line written | | **$(ratio "${T_EXIT[$k]}" "${T_END[fuwa/file]}")** | | |" \
        "$(ratio "${PEAK[fuwa/file]}" "${PEAK[$k]}") | $(ratio "${CPU[fuwa/file]}" "${CPU[$k]}") |"
    a=fuwa/file b=fluent-bit/json
    echo "| **fuwa → file buffer / Fluent Bit → null** | json | fuwa: input read and fsynced; Fluent Bit's EOF | | **$(ratio "${T_END[$b]}" "${T_EOF[$a]}")** | | | | |"
    echo "| **fuwa → file / Fluent Bit → null** | json | fuwa: every line written; Fluent Bit's EOF | | **$(ratio "${T_END[$b]}" "${T_END[$a]}")** | |" \
        "$(ratio "${T_READ[$b]}" "${T_READ[$a]}") | $(ratio "${PEAK[$a]}" "${PEAK[$b]}") | $(ratio "${CPU[$a]}" "${CPU[$b]}") |"
fi
echo
echo "fuwa → file output check: ${CHECK[fuwa/file]}"

# the project's targets
ok() { awk "BEGIN { exit !($1) }" && echo "met" || echo "MISSED"; }
echo
echo "Target (issue 14): fuwa tail → file (file buffer) peak RSS ≤ 30 MiB: $(mib "${PEAK[fuwa/file]}") MiB $(ok "${PEAK[fuwa/file]} <= 30 * 1024")${FLUENT_BIT:+, below Fluent Bit → file ($(mib "${PEAK[fluent-bit/file]:-0}") MiB): $(ok "${PEAK[fuwa/file]} < ${PEAK[fluent-bit/file]:-0}")}"
echo "Target: fuwa peak RSS < 30 MiB: json $(mib "${PEAK[fuwa/json]}") MiB $(ok "${PEAK[fuwa/json]} < 30 * 1024")," \
    "none $(mib "${PEAK[fuwa/none]}") MiB $(ok "${PEAK[fuwa/none]} < 30 * 1024")"
if [[ -n "$FLUENT_BIT" ]]; then
    echo "Target: fuwa tail → null (json) ≥ 2× Fluent Bit (json parser):" \
        "$(ratio "${T_EXIT[fluent-bit/json]}" "${T_END[fuwa/json]}") against its exit $(ok "${T_EXIT[fluent-bit/json]} >= 2 * ${T_END[fuwa/json]}")," \
        "$(ratio "${T_END[fluent-bit/json]}" "${T_END[fuwa/json]}") against its EOF $(ok "${T_END[fluent-bit/json]} >= 2 * ${T_END[fuwa/json]}")"
    echo "Target: fuwa tail → file ≥ 2× Fluent Bit tail → null (json parser, its EOF):" \
        "every line in the file buffer (fsynced, position saved) $(ratio "${T_END[fluent-bit/json]}" "${T_EOF[fuwa/file]}")" \
        "$(ok "${T_END[fluent-bit/json]} >= 2 * ${T_EOF[fuwa/file]}")," \
        "every line written by the file output $(ratio "${T_END[fluent-bit/json]}" "${T_END[fuwa/file]}")" \
        "$(ok "${T_END[fluent-bit/json]} >= 2 * ${T_END[fuwa/file]}") (this includes waiting up to flush_interval = ${FLUSH}s for the last chunk)"
fi
print_bounds
