#!/usr/bin/env bash
# The host's CPU time as a new user meets it, read from /proc: from exec to
# "pipeline running", to the consumer group's first assignment, and per idle
# second after that. Starts Tansu and VictoriaMetrics on loopback; runs the
# embedded default unless TRANSFORM_PATH is set.
#   scripts/startup-cpu.sh [BINARY]      (default: the release build of scripts/build.sh)
#   IDLE_SECONDS=N                        idle span to measure (default 30)
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
KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kafka_port" KAFKA_TOPIC=pmacct KAFKA_CONSUMER_GROUP_ID=startup \
    VM_URL="http://127.0.0.1:$vm_port" VM_JOB=pmacct VM_INSTANCE=startup \
    ADMIN_BIND=127.0.0.1 PROMETHEUS_CLIENT_PORT="$admin_port" \
    "$bin" >"$work/host.log" 2>&1 &
host_pid=$!
echo "binary: $bin"
echo "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo)"

for _ in $(seq 1 2000); do
    grep -q 'pipeline running' "$work/host.log" && break
    kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log" >&2; exit 1; }
    sleep 0.005
done
report "exec to \"pipeline running\""
# The log, not /metrics: serving /metrics every few ms would be measured too.
for _ in $(seq 1 6000); do
    grep -q 'partitions assigned' "$work/host.log" && break
    sleep 0.005
done
grep -q 'partitions assigned' "$work/host.log" || { echo "no group join in 30 s" >&2; exit 1; }
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
