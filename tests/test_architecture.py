"""The import graph of edgeq/: no cycles, and every arrow points down the layer order (DESIGN §2).

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``. Plugins that sit above their
registry (stages, format backends) are found by name at run time, which is not an import arrow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgeq

ROOT = Path(edgeq.__file__).resolve().parent

# Top to bottom. A module belongs to the first layer with a matching prefix; the rest is "runtime".
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("edgeq.cli", "edgeq.commands", "edgeq.__main__", "edgeq.pytest_plugin")),
    ("api", ("edgeq", "edgeq.api", "edgeq.check", "edgeq.sweep", "edgeq.compress.sweep", "edgeq.zoo")),
    ("pipeline", ("edgeq.pipeline.pipeline", "edgeq.pipeline.selection")),
    ("stages/search", ("edgeq.stages", "edgeq.search", "edgeq.explain")),
    ("backends", ("edgeq.backends",)),
    ("runtime", ("",)),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or (p and module.startswith(p + ".") and p != "edgeq") or p == "":
                return i
    raise AssertionError(module)


def import_graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in ROOT.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for n in names:
                r = resolve(n) if n.split(".")[0] == "edgeq" else None
                if r and r != m:
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_layers_are_assigned_as_declared() -> None:
    assert LAYERS[layer_of("edgeq.commands.export")][0] == "cli"
    assert LAYERS[layer_of("edgeq")][0] == "api" and LAYERS[layer_of("edgeq.api")][0] == "api"
    assert LAYERS[layer_of("edgeq.pipeline.pipeline")][0] == "pipeline"
    assert LAYERS[layer_of("edgeq.stages.budget_check")][0] == "stages/search"
    assert LAYERS[layer_of("edgeq.backends.onnx")][0] == "backends"
    assert LAYERS[layer_of("edgeq.pipeline.state")][0] == "runtime"
    assert LAYERS[layer_of("edgeq.onnx.quantize")][0] == "runtime"


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_arrows_point_down() -> None:
    up = sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                for a, targets in import_graph().items() for b in targets if layer_of(b) < layer_of(a))
    assert up == []


def test_the_checker_sees_a_cycle_and_an_upward_arrow() -> None:
    g = {"edgeq.a": {"edgeq.b"}, "edgeq.b": {"edgeq.a"}, "edgeq.c": set()}
    assert cycles(g) == [["edgeq.a", "edgeq.b"]]
    assert layer_of("edgeq.onnx.export") > layer_of("edgeq.backends.onnx") > layer_of("edgeq.api")


def test_no_private_names_imported_across_modules() -> None:
    found = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgeq"):
                found += [f"{module_name(p)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []



def _function_local_import_blocks() -> list[tuple[str, list[str], list[ast.Import | ast.ImportFrom]]]:
    """(module path, its lines, one block of consecutive import statements nested in a function)."""
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        if "sample_apps" in p.parts:  # standalone scripts shipped to devices, not the package
            continue
        src = p.read_text()
        found: dict[int, ast.Import | ast.ImportFrom] = {}
        for fn in ast.walk(ast.parse(src, str(p))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.update({n.lineno: n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))})
        blocks: list[list[ast.Import | ast.ImportFrom]] = []
        for n in (found[k] for k in sorted(found)):
            if blocks and blocks[-1][-1].end_lineno == n.lineno - 1:
                blocks[-1].append(n)
            else:
                blocks.append([n])
        out += [(str(p.relative_to(ROOT.parent)), src.splitlines(), b) for b in blocks]
    return out


def _is_own(n: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(n, ast.ImportFrom):
        return bool(n.level) or (n.module or "").startswith("edgeq")
    return any(a.name.startswith("edgeq") for a in n.names)


def test_function_local_imports_are_third_party_and_say_why() -> None:
    """Issue #22: edgeq's own modules are imported at module level; a function imports only an optional or heavy
    third-party package (kept out of ``import edgeq`` and the light commands), with a comment saying which."""
    own, silent = [], []
    for rel, lines, block in _function_local_import_blocks():
        own += [f"{rel}:{n.lineno}" for n in block if _is_own(n)]
        text = lines[block[0].lineno - 2:block[-1].end_lineno]  # the line above the block, then the block
        if not any(line.lstrip().startswith("#") or "  #" in line for line in text):
            silent.append(f"{rel}:{block[0].lineno}")
    assert own == [] and silent == []


def test_import_edgeq_loads_no_optional_or_heavy_framework() -> None:
    """``import edgeq`` (and so ``edgeq --help``) stays free of torch and the optional extras."""
    code = ("import sys, edgeq.cli; print(' '.join(m for m in ('torch', 'executorch', 'torchao', 'transformers', "
            "'onnxruntime_genai', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_only_the_api_layer_renders_reports() -> None:
    """Features contribute report sections through edgeq.report.sections' registry; only the commands that write
    a report (export, sweep, validate) reach the page renderer, so no stage or feature imports it."""
    renderer = {"edgeq.report", "edgeq.report.html", "edgeq.report.markdown"}
    found = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                   if b in renderer and not a.startswith("edgeq.report") and layer_of(a) > layer_of("edgeq.api"))
    assert found == []
