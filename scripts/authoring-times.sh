#!/usr/bin/env bash
# An author's path without this repository, timed per language: `transform
# new`, `transform build` (the first build, then one after an edit), and
# `transform bench` of the module on the project's records, in a folder
# under /tmp with the toolchains scripts/setup.sh --tests installs.
#   scripts/authoring-times.sh [BINARY]    (default: the release build of scripts/build.sh)
#   LANGS="rust python js"                  languages to time
# Rust builds use their own target folder (AUTHORING_TARGET, default a
# fresh one: a cold build; set it to reuse one).
set -Eeuo pipefail
trap 'rc=$?; echo "authoring-times.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
env_file=$(scripts/setup.sh --tests)
# shellcheck source=/dev/null
source "$env_file"
bin=${1:-}
if [ -z "$bin" ]; then
    scripts/build.sh "$PKV_TOOLS/dist" >&2
    bin="$PKV_TOOLS/dist/bin/pmacct-kafka-vm"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${AUTHORING_TARGET:-$work/target}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

seconds() { # seconds CMD...: wall seconds of CMD, its output to $work/last.log
    local t0
    t0=$(date +%s%N)
    "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }
    awk -v d=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.2f", d / 1e9}'
}

for lang in ${LANGS:-rust python js}; do
    dir="$work/$lang-flows"
    new=$(seconds "$bin" transform new "$dir" --lang "$lang")
    cd "$dir"
    first=$(seconds "$bin" transform build)
    module=$(ls ./*.wasm)
    size=$(stat -c %s "$module")
    # One edit, as an author makes: a label added to every sample.
    case $lang in
        rust) sed -i 's/\.label("instance", instance);/.label("instance", instance).label("site", "lab");/' src/lib.rs ;;
        python) sed -i 's/("instance", config.require("instance"))]/("instance", config.require("instance")), ("site", "lab")]/' app.py ;;
        js) sed -i 's/\["instance", config.require("instance")\]\]/["instance", config.require("instance")], ["site", "lab"]]/' app.js ;;
    esac
    again=$(seconds "$bin" transform build)
    bench=$(seconds "$bin" transform bench --module "$module" --input records.jsonl --records 20000)
    figures=$(grep -E '^(load|transform|instance memory):' "$work/last.log" | tr '\n' ';')
    printf '%-7s new %ss  build %ss (first), %ss (after an edit)  bench %ss  module %s bytes\n         %s\n' \
        "$lang" "$new" "$first" "$again" "$bench" "$size" "$figures"
    cd - >/dev/null
done
