#!/usr/bin/env bash
# Finds import cycles between the host's top-level modules (a file or a
# folder of host/src): module A uses module B when A's files name
# `crate::B`. Prints each cycle and exits 1 when there is one; prints the
# dependency graph with --graph.
# Usage: scripts/import-cycles.sh [--graph]
set -Eeuo pipefail
trap 'rc=$?; echo "import-cycles.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
exec python3 - "${1:-}" <<'PY'
import pathlib, re, sys

src = pathlib.Path("host/src")
modules = {p.stem if p.is_file() else p.name: p for p in src.iterdir()
           if (p.suffix == ".rs" and p.stem not in ("lib", "main")) or p.is_dir()}
uses = {}
for name, path in modules.items():
    files = [path] if path.is_file() else list(path.rglob("*.rs"))
    text = "\n".join(f.read_text() for f in files)
    # Drop line comments: docs may name other modules.
    text = "\n".join(l.split("//", 1)[0] for l in text.splitlines())
    found = set(re.findall(r"crate::(\w+)", text))
    # `use crate::{a, b::c}` groups.
    for group in re.findall(r"crate::\{([^}]*)\}", text):
        found |= {g.strip().split("::")[0] for g in group.split(",") if g.strip()}
    uses[name] = sorted(m for m in found if m in modules and m != name)

if sys.argv[1] == "--graph":
    for name in sorted(uses):
        print(f"{name}: {' '.join(uses[name])}")

cycles, state, stack = [], {}, []
def visit(m):
    state[m] = "open"; stack.append(m)
    for d in uses[m]:
        if state.get(d) == "open":
            cycles.append(stack[stack.index(d):] + [d])
        elif d not in state:
            visit(d)
    stack.pop(); state[m] = "done"
for m in sorted(uses):
    if m not in state:
        visit(m)
for c in cycles:
    print("cycle: " + " -> ".join(c))
sys.exit(1 if cycles else 0)
PY
