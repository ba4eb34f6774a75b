"""Code-shape counts for the architecture issue: ``Any`` name tokens (imports included), function-local imports of
edgeq's own modules, functions with more than 7 parameters (self/cls not counted), functions over 60 lines, modules
over 300 lines.

    python scripts/code_counts.py [PACKAGE_DIR] [-v]      # -v lists the offenders
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

MAX_PARAMS, MAX_FN_LINES, MAX_MODULE_LINES = 7, 60, 300


def _is_local_edgeq_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").startswith("edgeq")
    return isinstance(node, ast.Import) and any(a.name.startswith("edgeq") for a in node.names)


def count(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"Any": [], "local edgeq imports": [], "functions >7 params": [],
                                   "functions >60 lines": [], "modules >300 lines": []}
    for p in sorted(root.rglob("*.py")):
        src = p.read_text()
        found["Any"] += [f"{p}:{t.start[0]}" for t in tokenize.generate_tokens(io.StringIO(src).readline)
                         if t.type == tokenize.NAME and t.string == "Any"]
        if len(src.splitlines()) > MAX_MODULE_LINES:
            found["modules >300 lines"].append(f"{p} ({len(src.splitlines())})")
        for fn in ast.walk(ast.parse(src)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = fn.args
            n = len([x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")])
            if n > MAX_PARAMS:
                found["functions >7 params"].append(f"{p}:{fn.lineno} {fn.name} ({n})")
            length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if length > MAX_FN_LINES:
                found["functions >60 lines"].append(f"{p}:{fn.lineno} {fn.name} ({length})")
            found["local edgeq imports"] += [f"{p}:{x.lineno}" for x in ast.walk(fn) if _is_local_edgeq_import(x)]
    return found


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "-v"]
    found = count(Path(args[0] if args else "edgeq"))
    for name, hits in found.items():
        print(f"{name}: {len(hits)}")
        if "-v" in argv and name != "Any":
            print("".join(f"  {h}\n" for h in hits), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
