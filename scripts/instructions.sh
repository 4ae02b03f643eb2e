#!/usr/bin/env bash
# Instructions the transform stage spends per record, by engine, counted by
# callgrind (valgrind): the same for the same binary whatever else the
# machine does. With --cold, each call starts with cold caches (64 MB
# written elsewhere before it) and the simulated cache misses per record
# are shown too (a 32 MB last-level cache, as on the project's machine).
#
#   scripts/instructions.sh [--cold]     (CALLS, default 10)
set -Eeuo pipefail
trap 'rc=$?; echo "instructions.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
cold=0
[ "${1:-}" = --cold ] && cold=1
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench -p pmacct-kafka-vm --bench instructions --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not build the instructions bench" >&2; exit 1; }
calls=${CALLS:-10}
records=$(( (calls + 1) * 1000 ))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
opts=(--tool=callgrind)
evict=0
if [ "$cold" = 1 ]; then
  opts+=(--cache-sim=yes --LL=33554432,16,64)
  evict=64
fi
printf '%-20s %10s %8s' engine 'instr/rec' ratio
[ "$cold" = 1 ] && printf ' %10s %10s %10s' 'D1 miss' 'LL miss' 'LLi miss'
printf '\n'
native=
for engine in native wasm wasm_no_time_limit; do
  ENGINE=$engine CALLS=$calls EVICT_MB=$evict valgrind "${opts[@]}" \
    --callgrind-out-file="$out/$engine" "$bin" >"$out/$engine.log" 2>&1 ||
    { cat "$out/$engine.log" >&2; exit 1; }
  # The engine's `run`, inclusive of everything it calls; columns as
  # callgrind lists them: Ir [Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw].
  line=$(callgrind_annotate --inclusive=yes --threshold=100 "$out/$engine" 2>/dev/null |
    grep -E 'transform::Backend>::run \[' | sed -E 's/\([ 0-9.]+%\)//g; s/,//g')
  [ -n "$line" ] || { echo "no Engine::run in the $engine profile" >&2; exit 1; }
  read -r -a c <<<"$line"
  native=${native:-${c[0]}}
  printf '%-20s %10.0f %7.3fx' "$engine" "$(echo "${c[0]} / $records" | bc -l)" \
    "$(echo "${c[0]} / $native" | bc -l)"
  if [ "$cold" = 1 ]; then
    printf ' %10.1f %10.1f %10.2f' \
      "$(echo "(${c[4]} + ${c[5]}) / $records" | bc -l)" \
      "$(echo "(${c[6]} + ${c[7]} + ${c[8]}) / $records" | bc -l)" \
      "$(echo "${c[6]} / $records" | bc -l)"
  fi
  printf '\n'
done
echo "($records records a run, after the first call's; callgrind $(valgrind --version | sed 's/valgrind-//'))"
