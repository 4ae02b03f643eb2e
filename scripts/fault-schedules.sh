#!/usr/bin/env bash
# Fault schedules (host/tests/schedules.rs) against the real services:
#   scripts/fault-schedules.sh                 the CI seeds
#   scripts/fault-schedules.sh --seed N        replay one seed
#   scripts/fault-schedules.sh --soak N        N more seeds from a random start
# Prints each schedule, each failing seed's violations, and a last line
# "schedules: P of N passed in T s". Exit 0 only if every seed passed.
# Builds the release test binary first (the profile scripts/test.sh uses).
set -Eeuo pipefail
trap 'rc=$?; echo "fault-schedules.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
case "${1:-}" in
    --soak) export SCHEDULE_SOAK=${2:?--soak N}; unset SCHEDULE_SEED ;;
    --seed) export SCHEDULE_SEED=${2:?--seed N}; unset SCHEDULE_SOAK ;;
    "") unset SCHEDULE_SEED SCHEDULE_SOAK ;;
    *) echo "usage: $0 [--seed N | --soak N]" >&2; exit 2 ;;
esac
env_file=$(scripts/setup.sh --tests)
# shellcheck source=/dev/null
source "$env_file"
started=$SECONDS
rc=0
cargo test --locked --release -p pmacct-kafka-vm --test schedules -- --nocapture --test-threads=1 \
    fault_schedules || rc=$?
echo "fault-schedules.sh: $((SECONDS - started)) s in all (build included), exit $rc" >&2
exit $rc
