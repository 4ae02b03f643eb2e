#!/usr/bin/env bash
# Runs every test of the workspace against real services. Installs what is
# missing first (scripts/setup.sh), then builds the release artefacts exactly
# as the Docker image does (scripts/build.sh) and the Python and JavaScript
# transforms (scripts/build-polyglot.sh). Tests run in the release
# profile so that build is shared, not done twice. Extra arguments go to
# `cargo test`. DOCKER_TEST=1 also builds and runs the Docker image
# (scripts/docker-test.sh).
set -Eeuo pipefail
trap 'rc=$?; echo "test.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
env_file=$(scripts/setup.sh --tests)
# shellcheck source=/dev/null
source "$env_file"
scripts/build.sh "$PKV_TOOLS/dist"
# Python and JavaScript transforms, from the same contract (host/tests/polyglot.rs).
PMACCT_POLYGLOT_WASM_DIR="${CARGO_TARGET_DIR:-$PWD/target}/polyglot"
scripts/build-polyglot.sh "$PMACCT_POLYGLOT_WASM_DIR"
export PMACCT_POLYGLOT_WASM_DIR
if [ "${DOCKER_TEST:-0}" != 1 ]; then
    exec cargo test --workspace --locked --release "$@"
fi
# DOCKER_TEST=1: then the image, built with podman and run
# (scripts/docker-test.sh: ~30 min more from a cold machine, so not in CI).
cargo test --workspace --locked --release "$@"
scripts/docker-test.sh
