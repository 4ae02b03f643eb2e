#!/usr/bin/env bash
# The host's start-up as a new user meets it, read from /proc: CPU from
# exec to "pipeline running", to the consumer group's first assignment, and
# per idle second after that, on the embedded default; then, for each module
# of MODULES, the start without a module cache, the first start with one
# (compiled and written) and the second (loaded), wall time and peak RSS
# too; then reloads: a module renamed onto TRANSFORM_PATH until
# transform_reloads_total rises, first seen (compiled) and seen before
# (from the cache), median of RELOADS. Starts Tansu and VictoriaMetrics on
# loopback.
#   scripts/startup-cpu.sh [BINARY]      (default: the release build of scripts/build.sh)
#   IDLE_SECONDS=N                        idle span to measure (default 30)
#   MODULES="name=path ..."               default: the Rust, Python and JavaScript
#                                         subnets examples, where built
#   RELOADS=N                             reloads measured (default 8)
# Prints one line per figure; CPU is user + system of every thread, in ms
# (the kernel's per-thread schedstat, so threads still alive are counted to
# the nanosecond; /proc/PID/stat's 10 ms ticks are printed beside it).
set -Eeuo pipefail
trap 'rc=$?; echo "startup-cpu.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
env_file=$(scripts/setup.sh)
# shellcheck source=/dev/null
source "$env_file"
# shellcheck source=scripts/services.sh
source scripts/services.sh

bin=${1:-}
if [ -z "$bin" ]; then
    scripts/build.sh "$PKV_TOOLS/dist" >&2
    bin="$PKV_TOOLS/dist/bin/pmacct-kafka-vm"
fi
idle=${IDLE_SECONDS:-30}

work=$(mktemp -d)
host_pid=
cleanup() {
    [ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null || true
    stop_services
    rm -rf "$work"
}
trap cleanup EXIT

# CPU of every live thread of $1, ms (schedstat's first field is ns on CPU).
cpu_ms() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.1f", ns / 1e6}'
}
# utime + stime of the whole process, ms (10 ms ticks, exited threads included).
tick_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%d", ($12 + $13) * 1000 / hz}' /proc/"$1"/stat
}
report() { # label
    printf '%-32s %8s ms CPU  (%s ms in ticks)\n' "$1" "$(cpu_ms "$host_pid")" "$(tick_ms "$host_pid")"
    [ -z "${THREADS:-}" ] || threads
}
threads() { # each live thread's name and CPU, ms (THREADS=1)
    for t in /proc/"$host_pid"/task/*; do
        printf '    %-20s %8.1f ms\n' "$(cat "$t/comm")" "$(awk '{print $1 / 1e6}' "$t/schedstat")"
    done
}

kafka_port=$(free_port); vm_port=$(free_port); admin_port=$(free_port)
start_tansu "$kafka_port" "$work/tansu.log"
start_victoria_metrics "$vm_port" "$work/vm" "$work/vm.log"
# The topic exists before the host subscribes, as in production.
echo '{"event_type":"purge","ip_src":"10.0.0.1","stamp_updated":"2026-11-25 10:01:02","packets":1,"bytes":1}' |
    LD_LIBRARY_PATH=$KCAT_LD_LIBRARY_PATH timeout 60 kcat -b "127.0.0.1:$kafka_port" -t pmacct -P

cd "$work"
# launch LOG [VAR=VALUE...]: the host in the background, on its own group.
launch() {
    local log=$1
    shift
    started=$(date +%s%N)
    env KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kafka_port" KAFKA_TOPIC=pmacct \
        KAFKA_CONSUMER_GROUP_ID="startup-$RANDOM" VM_URL="http://127.0.0.1:$vm_port" \
        VM_JOB=pmacct VM_INSTANCE=startup ADMIN_BIND=127.0.0.1 \
        PROMETHEUS_CLIENT_PORT="$admin_port" TRANSFORM_CACHE_DIR=off "$@" \
        "$bin" >"$log" 2>&1 &
    host_pid=$!
}
# wait_log LOG TEXT [TRIES]: until the host logs TEXT (5 ms steps).
wait_log() {
    for _ in $(seq 1 "${3:-6000}"); do
        grep -q "$2" "$1" && return 0
        kill -0 "$host_pid" 2>/dev/null || { cat "$1" >&2; exit 1; }
        sleep 0.005
    done
    echo "no \"$2\" in $1" >&2
    exit 1
}
stop_host() {
    kill "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null || true
    host_pid=
}
echo "binary: $bin"
echo "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo)"

launch "$work/host.log"
wait_log "$work/host.log" 'pipeline running'
report "exec to \"pipeline running\""
# The log, not /metrics: serving /metrics every few ms would be measured too.
wait_log "$work/host.log" 'partitions assigned'
report "exec to group joined"
sleep 2 # let the first record's batch go out before idling
before=$(cpu_ms "$host_pid"); before_ticks=$(tick_ms "$host_pid")
sleep "$idle"
after=$(cpu_ms "$host_pid"); after_ticks=$(tick_ms "$host_pid")
awk -v a="$after" -v b="$before" -v at="$after_ticks" -v bt="$before_ticks" -v s="$idle" \
    'BEGIN {printf "%-32s %8.2f ms CPU  (%.2f ms in ticks) over %d s\n", "idle, per second", (a - b) / s, (at - bt) / s, s}'
[ -z "${THREADS:-}" ] || threads
printf '%-32s %8s KiB\n' "resident memory" "$(awk '/VmRSS/ {print $2}' /proc/"$host_pid"/status)"
printf '%-32s %8s\n' "threads" "$(ls /proc/"$host_pid"/task | wc -l)"
stop_host

# start_figures LABEL MODULE CACHE: one start to "pipeline running".
start_figures() {
    launch "$work/start.log" TRANSFORM_PATH="$2" TRANSFORM_CACHE_DIR="$3"
    wait_log "$work/start.log" 'pipeline running'
    local wall=$(( ($(date +%s%N) - started) / 1000000 ))
    printf '%-32s %8s ms CPU %7s ms wall %8s KiB peak RSS\n' "$1" "$(cpu_ms "$host_pid")" \
        "$wall" "$(awk '/VmHWM/ {print $2}' /proc/"$host_pid"/status)"
    stop_host
}

guests=$(dirname "$bin")/../transforms
polyglot=${PMACCT_POLYGLOT_WASM_DIR:-${CARGO_TARGET_DIR:-target}/polyglot}
modules=${MODULES:-rust-subnets=$guests/example_subnets.wasm python-subnets=$polyglot/python_subnets.wasm js-subnets=$polyglot/js_subnets.wasm}
for entry in $modules; do
    name=${entry%%=*} module=${entry#*=}
    [ -f "$module" ] || { echo "$name: $module not built (scripts/build-polyglot.sh)"; continue; }
    echo "$name ($(( $(stat -c %s "$module") / 1024 )) KiB)"
    start_figures "  no cache" "$module" off
    rm -rf "$work/cache"
    start_figures "  cache, first start (miss)" "$module" "$work/cache"
    start_figures "  cache, next start (hit)" "$module" "$work/cache"
done

# reload_ms PATH MODULE: rename MODULE onto PATH; ms until the reload counts.
reloads_ok() {
    curl -s "http://127.0.0.1:$admin_port/metrics" |
        awk '/^transform_reloads_total\{result="ok"\}/ {print $2}'
}
reload_ms() {
    local before t0
    before=$(reloads_ok)
    cp "$2" "$1.tmp"
    t0=$(date +%s%N)
    mv "$1.tmp" "$1"
    until [ "$(reloads_ok)" != "$before" ]; do sleep 0.002; done
    echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
a="$guests/example_subnets.wasm" b="$guests/example_counters.wasm"
if [ -f "$a" ] && [ -f "$b" ]; then
    cp "$a" "$work/module.wasm"
    rm -rf "$work/cache"
    launch "$work/reload.log" TRANSFORM_PATH="$work/module.wasm" TRANSFORM_CACHE_DIR="$work/cache"
    wait_log "$work/reload.log" 'pipeline running'
    first=$(reload_ms "$work/module.wasm" "$b")
    printf '%-32s %8s ms (%s, first seen: compiled)\n' "reload" "$first" "$(basename "$b")"
    seen=$(for i in $(seq 1 "${RELOADS:-8}"); do
        if [ $((i % 2)) = 1 ]; then m=$a; else m=$b; fi
        reload_ms "$work/module.wasm" "$m"
    done | median)
    printf '%-32s %8s ms (median of %s, seen before: from the cache)\n' "reload" "$seen" "${RELOADS:-8}"
    stop_host
fi
