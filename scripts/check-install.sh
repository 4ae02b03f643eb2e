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
# Debian's build prints an empty version: the package says it.
check "victoria-metrics" sh -c '"$0" -version && dpkg-query -W -f "\${Version}\n" victoria-metrics' "$VICTORIA_METRICS_BIN"
check "kcat with librdkafka for Tansu" env LD_LIBRARY_PATH="$KCAT_LD_LIBRARY_PATH" kcat -V
check "pmacctd" "$PMACCTD_BIN" -V
check "prometheus" "$PROMETHEUS_BIN" --version
check "wasm32-wasip2 target" sh -c 'rustup target list --installed | grep -x wasm32-wasip2'
log "ok: every tool installed from nothing runs"
