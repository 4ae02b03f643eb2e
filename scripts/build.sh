#!/usr/bin/env bash
# Builds what the Docker image ships, and checks it runs: the host binary
# (default transform embedded) and the example transforms, into DEST
# (default: dist/). The Dockerfile runs this script, and so does
# scripts/test.sh, so CI builds exactly what the image gets.
set -Eeuo pipefail
trap 'rc=$?; echo "build.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
DEST=${1:-dist}
TARGET=${CARGO_TARGET_DIR:-target}

log() { printf '[build] %s\n' "$*" >&2; }

log "cargo build --release (host, with every guest module)"
cargo build --release --locked -p pmacct-kafka-vm

mkdir -p "$DEST/bin" "$DEST/transforms"
cp "$TARGET/release/pmacct-kafka-vm" "$DEST/bin/"
# Debug info stays in the target dir; the shipped binary does without.
if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$DEST/bin/pmacct-kafka-vm"
fi
cp "$TARGET"/wasm-guest/wasm32-wasip2/release/example_*.wasm "$DEST/transforms/"

bin="$DEST/bin/pmacct-kafka-vm"
"$bin" --version >&2
# The embedded default transform on one record, and every shipped module
# through the loader's own check.
record='{"event_type":"purge","ip_src":"10.0.0.1","ip_dst":"10.0.0.2","port_src":443,"port_dst":51000,"ip_proto":"tcp","stamp_inserted":"2026-11-25 10:00:00","stamp_updated":"2026-11-25 10:01:02","packets":12,"bytes":9000}'
out=$(printf '%s\n' "$record" | "$bin" transform test)
case "$out" in
    *'"values":[9000],"timestamps":[1795600862000]'*) ;;
    *) log "the built binary's default transform wrote: $out"; exit 1 ;;
esac
for module in "$DEST"/transforms/*.wasm; do
    # enrich needs its table; the others take the default rules' settings.
    "$bin" transform check "$module" --transform-config 'prefixes=10.0.0.0/8,example' >&2
done
log "ok: $DEST/bin/pmacct-kafka-vm ($(du -h "$bin" | cut -f1)) and $(ls "$DEST"/transforms | wc -l) example transforms"
