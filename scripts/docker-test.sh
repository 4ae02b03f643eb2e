#!/usr/bin/env bash
# The Docker image built from the real Dockerfile and run as a user of the
# original tool runs it (`docker run --env-file .env`), with podman (no
# Docker daemon or image registry is needed). Base images that cannot be
# pulled are made locally under the names the FROM lines use: the runtime
# base from debootstrap, the build base from debootstrap plus this machine's
# Rust toolchain (with wasm32-wasip2). Then it runs the image against Tansu
# and VictoriaMetrics on loopback and checks: the samples arrive, /metrics
# answers on the published port, the HEALTHCHECK passes, the process is not
# root, a module mounted in and replaced is reloaded inside the container,
# and `podman stop` (SIGTERM) exits 0 with the offsets committed (a restart
# reads nothing again).
#   scripts/docker-test.sh            build (cached layers reused) and check
#   DOCKER_TEST_IMAGE=NAME            the image's name (default pmacct-kafka-vm:test)
# Needs root and Debian's podman, runc and debootstrap (installed if missing).
set -Eeuo pipefail
trap 'rc=$?; echo "docker-test.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
env_file=$(scripts/setup.sh)
# shellcheck source=/dev/null
source "$env_file"
# shellcheck source=scripts/services.sh
source scripts/services.sh

image=${DOCKER_TEST_IMAGE:-pmacct-kafka-vm:test}
say() { printf '\n== %s\n' "$*" >&2; }
started=$SECONDS

say "examples/kubernetes against Kubernetes' schemas (kubernetes-validate, from PyPI)"
validate="$PKV_TOOLS/validate"
[ -x "$validate/bin/kubernetes-validate" ] || {
    python3 -m venv "$validate"
    "$validate/bin/pip" install -q kubernetes-validate==1.37.0
}
"$validate/bin/kubernetes-validate" --strict examples/kubernetes/*.yaml

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing podman, runc, debootstrap (Debian's packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc debootstrap uidmap fuse-overlayfs slirp4netns >/dev/null
fi
# crun cannot set rlimits or use hybrid cgroups here; runc with cgroupfs can.
conf="$PKV_TOOLS/containers.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' >"$conf"
export CONTAINERS_CONF=$conf

ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo http://deb.debian.org/debian)

# debian_root DIR [PACKAGES]: a Debian bookworm tree, with this machine's CA bundle.
debian_root() {
    local include=()
    [ -z "${2:-}" ] || include=("--include=$2")
    debootstrap --variant=minbase "${include[@]}" bookworm "$1" "$mirror" >"$1.log" 2>&1 \
        || { tail -20 "$1.log" >&2; return 1; }
    cp "$ca" "$1/etc/ssl/certs/ca-certificates.crt" 2>/dev/null \
        || { mkdir -p "$1/etc/ssl/certs" && cp "$ca" "$1/etc/ssl/certs/ca-certificates.crt"; }
    # What Debian's slim images leave out: the downloaded packages, the
    # package lists, documentation.
    rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/* \
        "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*
}

# base NAME: the image a FROM line names, pulled, else made here.
base() {
    local name=$1 root
    if podman image exists "$name"; then return; fi
    if timeout 60 podman pull -q "docker.io/library/$name" >/dev/null 2>&1; then return; fi
    say "making $name locally (no registry reachable)"
    root=$(mktemp -d)
    case $name in
        debian:*)
            debian_root "$root"
            tar -C "$root" -c . | podman import -q - "localhost/$name" >/dev/null
            ;;
        rust:*)
            debian_root "$root" build-essential,ca-certificates,curl,git,pkg-config,libssl-dev,binutils
            mkdir -p "$root/usr/local/rustup" "$root/usr/local/cargo/bin"
            local rustup_home=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
            local toolchain
            toolchain=$(rustup show active-toolchain | awk '{print $1}')
            cp -a "$rustup_home/settings.toml" "$root/usr/local/rustup/"
            mkdir -p "$root/usr/local/rustup/toolchains"
            cp -a "$rustup_home/toolchains/$toolchain" "$root/usr/local/rustup/toolchains/"
            cp -a "$cargo_home/bin/." "$root/usr/local/cargo/bin/"
            tar -C "$root" -c . | podman import -q \
                -c 'ENV RUSTUP_HOME=/usr/local/rustup' -c 'ENV CARGO_HOME=/usr/local/cargo' \
                -c 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                - "localhost/$name" >/dev/null
            ;;
        *) echo "no recipe for base image $name" >&2; return 1 ;;
    esac
    rm -rf "$root" "$root.log"
}

for name in $(awk '/^FROM /{print $2}' Dockerfile); do base "$name"; done
say "podman build (the real Dockerfile) -> $image"
t0=$SECONDS
# Docker format: OCI images drop HEALTHCHECK.
podman build -q --format docker --network host -t "$image" . >/dev/null
build_s=$((SECONDS - t0))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1024 / 1024)) MiB, built in ${build_s} s" >&2

work=$(mktemp -d)
name=pkv-docker-test-$$
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    stop_services
    rm -rf "$work"
}
trap cleanup EXIT
kafka_port=$(free_port); vm_port=$(free_port); admin_port=$(free_port)
start_tansu "$kafka_port" "$work/tansu.log"
start_victoria_metrics "$vm_port" "$work/vm" "$work/vm.log"
python3 scripts/gen_records.py 2000 >"$work/records.jsonl" 2>/dev/null
produce() { LD_LIBRARY_PATH=$KCAT_LD_LIBRARY_PATH timeout 60 kcat -b "127.0.0.1:$kafka_port" -t pmacct -P -l "$1"; }
produce "$work/records.jsonl"

# The module folder, mounted read-only: the image's own subnets example.
mkdir -p "$work/transforms"
podman run --rm --entrypoint cat "$image" /usr/local/share/pmacct-kafka-vm/transforms/example_subnets.wasm >"$work/transforms/module.wasm"
cat >"$work/.env" <<ENV
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port
KAFKA_TOPIC=pmacct
KAFKA_CONSUMER_GROUP_ID=kafka2vm
KAFKA_SESSION_TIMEOUT_MS=6000
VM_URL=http://127.0.0.1:$vm_port
VM_INSTANCE=docker-probe
VM_JOB=pmacct
VM_MAX_SAMPLES_PER_SEND=1000
VM_MAX_TIME_TO_SEND=2
VM_DURABLE_AFTER=3s
PROMETHEUS_CLIENT_PORT=$admin_port
TRANSFORM_PATH=/transforms/module.wasm
ENV
run() { podman run -d --name "$name" --network host --env-file "$work/.env" \
    -v "$work/transforms:/transforms:ro" "$image" >/dev/null; }
metric() { curl -fsS "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
    echo "FAILED: $what within $limit s" >&2
    podman logs "$name" 2>&1 | tail -30 >&2
    exit 1
}
query() { curl -fsS "http://127.0.0.1:$vm_port/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'; }

say "running the image with --env-file (the original tool's variables)"
run
consumed() { [ "$(metric records_consumed_total)" = "$1" ]; }
wait_for 60 "/metrics on the published port counts 2000 records" consumed 2000
samples() { [ "$(query 'count(count_over_time({job="pmacct"}[3650d]))')" != 0 ]; }
wait_for 60 "samples in VictoriaMetrics" samples
echo "ok: 2000 records read, samples stored, /metrics on :$admin_port" >&2
podman healthcheck run "$name" && echo "ok: HEALTHCHECK passes" >&2
user=$(podman exec "$name" id -u)
[ "$user" != 0 ] || { echo "FAILED: the process runs as root" >&2; exit 1; }
echo "ok: the process runs as uid $user" >&2

say "replacing the mounted module"
podman run --rm --entrypoint cat "$image" /usr/local/share/pmacct-kafka-vm/transforms/example_counters.wasm >"$work/next.wasm"
mv "$work/next.wasm" "$work/transforms/module.wasm"
reloaded() { curl -fsS "http://127.0.0.1:$admin_port/metrics" | grep -q '^transform_reloads_total{result="ok"} [1-9]'; }
wait_for 30 "the reload inside the container" reloaded
echo "ok: the replaced module was reloaded" >&2

say "podman stop (SIGTERM), then a restart reads nothing again"
committed() { [ "$(metric kafka_uncommitted_records)" = 0 ]; }
wait_for 30 "every offset committed" committed
podman stop -t 40 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "FAILED: exit code $code after SIGTERM" >&2; podman logs "$name" 2>&1 | tail -20 >&2; exit 1; }
echo "ok: SIGTERM exits 0" >&2
podman rm "$name" >/dev/null
run
assigned() { podman logs "$name" 2>&1 | grep -q "partitions assigned"; }
wait_for 60 "the restarted container's group join" assigned
printf '%s\n' "$(head -n 1 "$work/records.jsonl")" >"$work/one.jsonl"
produce "$work/one.jsonl"
wait_for 60 "the one new record" consumed 1
sleep 3
consumed 1 || { echo "FAILED: the restart read $(metric records_consumed_total) records, not 1" >&2; exit 1; }
echo "ok: after the restart only the new record was read" >&2
say "ok: image $((size / 1024 / 1024)) MiB, built in ${build_s} s, checked in $((SECONDS - started)) s in all"
