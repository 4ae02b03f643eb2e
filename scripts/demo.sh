#!/usr/bin/env bash
# The whole pipeline on loopback, on an embedded default: starts Tansu and
# VictoriaMetrics, produces sample pmacct records (generated, and from the
# real pmacctd reading a bundled pcap), runs the host with the
# original tool's environment variables, and shows what VictoriaMetrics holds.
#   DEMO_RECORDS=N   how many records (default 5000)
#   DEMO_KEEP=1      leave everything running until Ctrl-C
set -Eeuo pipefail
trap 'rc=$?; echo "demo.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
root=$PWD
env_file=$(scripts/setup.sh)
# shellcheck source=/dev/null
source "$env_file"
# shellcheck source=scripts/services.sh
source scripts/services.sh

say() { printf '\n== %s\n' "$*"; }

say "building the host (first build: ~10 min on 2 cores, then seconds)"
# The release build scripts/test.sh and the Docker image use: one build
# serves both README commands.
scripts/build.sh "$PKV_TOOLS/dist"
bin="$PKV_TOOLS/dist/bin/pmacct-kafka-vm"

work=$(mktemp -d)
host_pid=
cleanup() {
    [ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null || true
    stop_services
    rm -rf "$work"
}
trap cleanup EXIT

kafka_port=$(free_port); vm_port=$(free_port); admin_port=$(free_port)
say "starting Tansu on 127.0.0.1:$kafka_port and VictoriaMetrics on 127.0.0.1:$vm_port"
start_tansu "$kafka_port" "$work/tansu.log"
start_victoria_metrics "$vm_port" "$work/vm" "$work/vm.log"

n=${DEMO_RECORDS:-5000}
say "producing $n pmacct records to topic 'pmacct'"
python3 scripts/gen_records.py "$n" >"$work/records.jsonl" 2>"$work/totals"
head -n 1 "$work/records.jsonl"
LD_LIBRARY_PATH=$KCAT_LD_LIBRARY_PATH timeout 60 kcat -b "127.0.0.1:$kafka_port" -t pmacct -P -l "$work/records.jsonl"
read -r expected_records expected_bytes _ < <(tr '=' ' ' <"$work/totals" | awk '{print $2, $4, $6}')

say "running the real pmacctd on a bundled pcap (examples/pmacct), into the same topic"
python3 examples/pmacct/make_pcap.py "$work/flows.pcap" >"$work/pcap-expected.jsonl"
sed -e "s#PCAP_FILE#$work/flows.pcap#" -e "s#KAFKA_PORT#$kafka_port#" examples/pmacct/pmacctd.conf >"$work/pmacctd.conf"
LD_LIBRARY_PATH=$KCAT_LD_LIBRARY_PATH timeout 60 "$PMACCTD_BIN" -f "$work/pmacctd.conf" >"$work/pmacctd.log" 2>&1
read -r pcap_records pcap_bytes < <(python3 -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print(len(rows), sum(r["bytes"] for r in rows))' "$work/pcap-expected.jsonl")
echo "pmacctd published $pcap_records flow records ($pcap_bytes bytes of traffic)"
expected_records=$((expected_records + pcap_records))
expected_bytes=$((expected_bytes + pcap_bytes))

say "running pmacct-kafka-vm (the original tool's variables)"
cat >"$work/.env" <<ENV
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port
KAFKA_TOPIC=pmacct
KAFKA_CONSUMER_GROUP_ID=kafka2vm
VM_URL=http://127.0.0.1:$vm_port
VM_INSTANCE=demo-probe
VM_JOB=pmacct
VM_MAX_SAMPLES_PER_SEND=1000
VM_MAX_TIME_TO_SEND=2
PROMETHEUS_CLIENT_PORT=$admin_port
ENV
sed 's/^/    /' "$work/.env"
(cd "$work" && KAFKA_SESSION_TIMEOUT_MS=6000 exec "$bin") 2>"$work/host.log" &
host_pid=$!

query() { # promql → first value
    curl -fsS "http://127.0.0.1:$vm_port/api/v1/query" --data-urlencode "query=$1" \
        | python3 -c '
import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
got=0
for _ in $(seq 1 120); do
    got=$(query 'count(count_over_time(bytes[3650d]))')
    [ "$got" = "$expected_records" ] && break
    kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log"; echo "the host exited" >&2; exit 1; }
    sleep 1
done

say "VictoriaMetrics now holds"
echo "series of bytes:    $got (records produced: $expected_records)"
echo "one sample from pmacctd:"
curl -fsS "http://127.0.0.1:$vm_port/api/v1/export" --data-urlencode 'match[]={__name__="bytes",ip_proto="icmp",ip_src="172.16.5.5"}' >"$work/pm-export.jsonl"
head -n 1 "$work/pm-export.jsonl" | sed 's/^/    /'
sum=$(query 'sum(sum_over_time(bytes[3650d]))')
echo "sum(bytes):         $sum (bytes produced: $expected_bytes)"
echo "top talkers by source address:"
curl -fsS "http://127.0.0.1:$vm_port/api/v1/query" \
    --data-urlencode 'query=topk(3, sum by (ip_src) (sum_over_time(bytes[3650d])))' \
    | python3 -c '
import json,sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("   ", r["metric"]["ip_src"], r["value"][1])'
echo "one sample, as exported:"
curl -fsS "http://127.0.0.1:$vm_port/api/v1/export" --data-urlencode 'match[]={__name__="bytes"}' >"$work/export.jsonl"
head -n 1 "$work/export.jsonl" | sed 's/^/    /'
echo "the host's counters (http://127.0.0.1:$admin_port/metrics):"
curl -fsS "http://127.0.0.1:$admin_port/metrics" | grep -E '^(samples_count_total|records_consumed_total|batches_sent_total|record_errors_total)' | sed 's/^/    /'

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "running; Ctrl-C to stop (VictoriaMetrics: http://127.0.0.1:$vm_port)"
    wait "$host_pid" || true
fi
kill -TERM "$host_pid"
status=0; wait "$host_pid" || status=$?
host_pid=
echo "the host stopped on SIGTERM with exit code $status"
if [ "$got" != "$expected_records" ] || [ "${sum%.*}" != "$expected_bytes" ]; then
    echo "MISMATCH: see $work/host.log" >&2
    cat "$work/host.log" >&2
    exit 1
fi
say "ok: every record became a sample in VictoriaMetrics"
