#!/usr/bin/env bash
# Runs every test of the workspace against real services. Installs what is
# missing first (scripts/setup.sh). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
env_file=$(scripts/setup.sh --tests)
# shellcheck source=/dev/null
source "$env_file"
exec cargo test --workspace --locked "$@"
