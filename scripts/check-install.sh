#!/usr/bin/env bash
# Tests the install path itself: scripts/setup.sh --tests into an empty
# PKV_TOOLS (a new temporary directory unless PKV_TOOLS names an empty one),
# then every tool it installed must run. Exit 0 only if all of them do; on
# failure, stderr names the tool or the setup step.
set -Eeuo pipefail
trap 'rc=$?; echo "check-install.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
if [ -z "${PKV_TOOLS:-}" ]; then
    PKV_TOOLS=$(mktemp -d "${TMPDIR:-/tmp}/pkv-tools.XXXXXX")
    trap 'rm -rf "$PKV_TOOLS"' EXIT
fi
if [ -n "$(ls -A "$PKV_TOOLS" 2>/dev/null)" ]; then
    echo "check-install.sh: PKV_TOOLS=$PKV_TOOLS is not empty; this checks an install from nothing" >&2
    exit 1
fi
export PKV_TOOLS
log() { printf '[check-install] %s\n' "$*" >&2; }

started=$SECONDS
env_file=$(scripts/setup.sh --tests)
# shellcheck source=/dev/null
source "$env_file"
log "setup.sh --tests into an empty $PKV_TOOLS: $((SECONDS - started)) s"

# Each tool must run and say its version.
check() { # check WHAT COMMAND...
    local what=$1 out
    shift
    if ! out=$("$@" 2>&1 </dev/null); then
        echo "check-install.sh: $what does not run: $* said: $out" >&2
        exit 1
    fi
    local first
    first=$(printf '%s\n' "$out" | grep -m1 . || true)
    log "$what: ${first:-ran (prints no version)}"
}
check "tansu" "$TANSU_BIN" --version
check "tansu (SQLite)" "$TANSU_LIBSQL_BIN" --version
check "componentize-py" "$COMPONENTIZE_PY" --version
check "componentize-js" "$COMPONENTIZE_JS" --version
# Debian's builds print an empty version: the package says it (for the
# current one, unpacked from trixie's package, the VERSION file setup.sh
# kept). Both must serve: -version alone proves only that the binary loads.
check_vm() { # check_vm WHAT BINARY VERSION
    local what=$1 bin=$2 version=$3 dir port out
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" -storageDataPath="$dir/data" -httpListenAddr="127.0.0.1:$port" >"$dir/log" 2>&1 &
    local pid=$!
    out=
    for _ in $(seq 50); do
        out=$(curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null) && break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    if [ "$out" != "OK" ]; then
        echo "check-install.sh: $what ($bin) did not answer /health" >&2
        exit 1
    fi
    log "$what: $version, /health OK"
}
check_vm "victoria-metrics (current)" "$VICTORIA_METRICS_BIN" "$(cat "$PKV_TOOLS/vm-current/VERSION")"
check_vm "victoria-metrics (1.79)" "$VICTORIA_METRICS_1_79_BIN" "$(dpkg-query -W -f '${Version}' victoria-metrics)"
check "kcat with librdkafka for Tansu" env LD_LIBRARY_PATH="$KCAT_LD_LIBRARY_PATH" kcat -V
check "pmacctd" "$PMACCTD_BIN" -V
check "prometheus" "$PROMETHEUS_BIN" --version
check "wasm32-wasip2 target" sh -c 'rustup target list --installed | grep -x wasm32-wasip2'
log "ok: every tool installed from nothing runs"
