"""Mixed precision for ONNX by torch module: which graph nodes a module became, and 16-bit weight storage.

The torch-side sensitivity pass (:mod:`edgeq.prepare`) ranks ``nn.Linear`` modules; the search keeps the top ones
out of INT8. To find their MatMul/Gemm nodes, the float export records ``node name -> module path`` (from the
exporter's ``pkg.torch.onnx.name_scopes``, before that per-node metadata is stripped) in one model-level
metadata entry. A kept linear stores its weight as float16 behind a ``Cast`` (ONNX Runtime folds the Cast into a
float32 constant when the session loads, so it runs the float kernel): half the bytes of float32, and no
measurable error for weights — the activations, not the weights, carry the outliers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

MODULE_MAP_KEY = "edgeq.node_modules"
_SCOPES = "pkg.torch.onnx.name_scopes"


def module_map_of_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """``{MatMul/Gemm node name: innermost module path}`` from the exporter's per-node name scopes (whose last
    entry is the FX node the ONNX node came from, the one before it the module that ran it)."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        for p in node.metadata_props:
            if p.key == _SCOPES:
                try:
                    scopes = ast.literal_eval(p.value)
                except (ValueError, SyntaxError):
                    continue
                # ['', <module path>, ..., <innermost module path>, <FX node name>]
                if isinstance(scopes, list) and len(scopes) >= 2 and isinstance(scopes[-2], str) and scopes[-2]:
                    out[node.name] = scopes[-2]
    return out


def record_module_map(model: onnx.ModelProto) -> bool:
    """Store :func:`module_map_of_nodes` in the model's metadata (before per-node metadata is stripped)."""
    mapping = module_map_of_nodes(model)
    if not mapping:
        return False
    for p in list(model.metadata_props):
        if p.key == MODULE_MAP_KEY:
            model.metadata_props.remove(p)
    entry = model.metadata_props.add()
    entry.key, entry.value = MODULE_MAP_KEY, json.dumps(mapping, sort_keys=True)
    return True


def read_module_map(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == MODULE_MAP_KEY:
            value = json.loads(p.value)
            return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    return {}


def nodes_for_modules(path: Path, modules: list[str]) -> list[str]:
    """Graph nodes (that still exist in ``path``) of each module, in the order of ``modules``.

    A module matches its own path and the wrapper around it (``dense`` for ``dense.linear``: SmoothQuant wraps
    a Linear and the sensitivity pass names the inner one).
    """
    mapping = read_module_map(path)
    present = {n.name for n in onnx.load(str(path), load_external_data=False).graph.node}
    out: list[str] = []
    for mod in modules:
        for node, scope in mapping.items():
            if node in present and node not in out and (scope == mod or mod.startswith(scope + ".")
                                                         or scope.startswith(mod + ".")):
                out.append(node)
    return out


def weights_to_fp16(path: Path, nodes: list[str]) -> list[str]:
    """Store the float32 weight initializer of each MatMul/Gemm in ``nodes`` as float16 + ``Cast``, in place.

    Returns the nodes changed. Initializers shared with other nodes keep a float32 copy for those.
    """
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    wanted = set(nodes)
    changed: list[str] = []
    new_nodes = []
    for node in model.graph.node:
        if node.name in wanted and node.op_type in ("MatMul", "Gemm") and len(node.input) > 1:
            w = inits.get(node.input[1])
            if w is not None and w.data_type == onnx.TensorProto.FLOAT:
                half = numpy_helper.from_array(numpy_helper.to_array(w).astype(np.float16), f"{w.name}_fp16_{node.name}")
                model.graph.initializer.append(half)
                cast_out = f"{half.name}_as_float"
                new_nodes.append(helper.make_node("Cast", [half.name], [cast_out], to=onnx.TensorProto.FLOAT,
                                                  name=f"{node.name}_weight_cast"))
                node.input[1] = cast_out
                changed.append(node.name)
        new_nodes.append(node)
    if not changed:
        return []
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.save(model, str(path))
    return changed
