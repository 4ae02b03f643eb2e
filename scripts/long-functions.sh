#!/usr/bin/env bash
# Lists Rust functions longer than a limit (default 60 lines, from the `fn`
# line to its closing brace), with file:line and length. Exits 1 when any
# is found under the given paths (default host/src guest-sdk/src).
# Usage: scripts/long-functions.sh [--max N] [PATH...]
set -Eeuo pipefail
trap 'rc=$?; echo "long-functions.sh: step failed at line $LINENO: $BASH_COMMAND (exit $rc)" >&2' ERR
cd "$(dirname "$0")/.."
max=60
if [ "${1:-}" = "--max" ]; then max=$2; shift 2; fi
[ $# -gt 0 ] || set -- host/src guest-sdk/src
exec python3 - "$max" "$@" <<'PY'
import pathlib, re, sys

limit = int(sys.argv[1])
fn = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')

def strip(line, state):
    """The line without strings, chars and comments; state carries block comments and raw strings."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out)
            state["block"], i = False, j + 2
            continue
        if state["raw"]:
            j = line.find('"' + "#" * state["raw_hashes"], i)
            if j < 0:
                return "".join(out)
            state["raw"], i = False, j + 1 + state["raw_hashes"]
            continue
        if state["str"]:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                state["str"] = False
            i += 1
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"], state["raw_hashes"], i = True, len(m.group(1)), i + m.end()
            continue
        if c == '"':
            state["str"], i = True, i + 1
            continue
        m = re.match(r"b?'(\\.|[^\\'])'", line[i:])
        if m:
            i += m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)

found = []
for root in sys.argv[2:]:
    for path in sorted(pathlib.Path(root).rglob("*.rs")):
        lines = path.read_text().splitlines()
        state = {"block": False, "raw": False, "raw_hashes": 0, "str": False}
        open_fns = []  # (name, start line, depth at which its body opened)
        depth = 0
        pending = None
        for no, line in enumerate(lines, 1):
            m = fn.match(line) if not (state["block"] or state["raw"] or state["str"]) else None
            code = strip(line, state)
            if m:
                pending = (m.group(7), no)
            for c in code:
                if c == "{":
                    depth += 1
                    if pending:
                        open_fns.append((pending[0], pending[1], depth))
                        pending = None
                elif c == "}":
                    if open_fns and open_fns[-1][2] == depth:
                        name, start, _ = open_fns.pop()
                        length = no - start + 1
                        if length > limit:
                            found.append((length, f"{path}:{start}", name))
                    depth -= 1
                elif c == ";" and pending:
                    pending = None  # a declaration without a body
for length, place, name in sorted(found, reverse=True):
    print(f"{length:5} {place} {name}")
if found:
    print(f"{len(found)} function(s) over {limit} lines", file=sys.stderr)
    sys.exit(1)
print(f"no function over {limit} lines", file=sys.stderr)
PY
