#!/usr/bin/env bash
# Compile time of a module under each compiler wasmtime offers for a
# reload (docs/performance.md, "Reload"): builds scripts/compile-tiers (its
# own wasmtime, with Winch: about 3 minutes on 2 cores) and runs it.
#   scripts/compile-tiers.sh [MODULE.wasm]   (default: the counters example,
#                                            as scripts/build.sh installs it)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
module=${1:-}
if [ -z "$module" ]; then
    env_file=$(scripts/setup.sh)
    # shellcheck source=/dev/null
    source "$env_file"
    module=$PKV_TOOLS/dist/transforms/example_counters.wasm
fi
[ -f "$module" ] || { echo "compile-tiers.sh: no module at $module; pass one" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-target}/compile-tiers
cargo build --release --quiet --locked --manifest-path scripts/compile-tiers/Cargo.toml --target-dir "$target"
"$target/release/compile-tiers" "$module"
