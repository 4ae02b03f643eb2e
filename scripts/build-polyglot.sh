#!/usr/bin/env bash
# Builds the Python and JavaScript transforms into components, from the same
# contract as the Rust ones (guest-sdk/wit/transform.wit), into DEST
# (default: target/polyglot). Needs the toolchains scripts/setup.sh --tests
# installs (COMPONENTIZE_PY, COMPONENTIZE_JS from its env file). A module is
# rebuilt only when a source is newer.
set -Eeuo pipefail
trap 'rc=$?; echo "build-polyglot.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
DEST=${1:-${CARGO_TARGET_DIR:-target}/polyglot}
: "${COMPONENTIZE_PY:?source the env file scripts/setup.sh --tests prints}"
: "${COMPONENTIZE_JS:?source the env file scripts/setup.sh --tests prints}"
mkdir -p "$DEST"
WIT=guest-sdk/wit

log() { printf '[polyglot] %s\n' "$*" >&2; }

# stale OUT SOURCES...: OUT is missing or older than a source file.
stale() {
    local out=$1
    shift
    # componentize-py leaves __pycache__ beside the sources (git ignores it).
    [ ! -f "$out" ] || [ -n "$(find "$@" -newer "$out" -type f -not -path '*/__pycache__/*' | head -n 1)" ]
}

# python_module NAME DIR [SDK_DIR WIT_DIR]: DIR holds app.py.
python_module() {
    local out="$DEST/$1.wasm" sdk=${3:-guest-sdk/python} wit=${4:-$WIT}
    if stale "$out" "$2" "$sdk" "$wit"; then
        log "componentize-py $2 -> $out"
        "$COMPONENTIZE_PY" -d "$wit" -w transform componentize \
            -p "$sdk" -p "$2" app -o "$out.tmp" >/dev/null
        mv "$out.tmp" "$out"
    fi
}

# js_module NAME FILE [SDK_FILE WIT_DIR]
js_module() {
    local out="$DEST/$1.wasm" sdk=${3:-guest-sdk/js/pmacct_transform.js} wit=${4:-$WIT}
    if stale "$out" "$2" "$sdk" "$wit"; then
        log "componentize-js $2 -> $out"
        # No WASI feature beyond what the host's empty sandbox offers.
        "$COMPONENTIZE_JS" "$2" --wit "$wit/transform.wit" --world-name transform \
            -d stdio random clocks http fetch-event -o "$out.tmp" >/dev/null
        mv "$out.tmp" "$out"
    fi
}

python_module python_subnets examples/transforms/python-subnets
python_module python_probe transforms/testing/python-probe
js_module js_subnets examples/transforms/js-subnets/app.js
js_module js_probe transforms/testing/js-probe/app.js
# The subnets examples and SDKs as they were on contract 1.0 (the module
# writes import lines): the host keeps loading such modules.
OLD=host/tests/fixtures/contract-1.0
python_module python_subnets_1_0 "$OLD/python" "$OLD/python" guest-sdk/wit-1.0
js_module js_subnets_1_0 "$OLD/js/app.js" "$OLD/js/pmacct_transform.js" guest-sdk/wit-1.0
log "ok: $(cd "$DEST" && ls -1 ./*.wasm | tr '\n' ' ')in $DEST"
