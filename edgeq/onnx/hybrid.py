"""Hybrid INT8 for ONNX: static QDQ convolutions (and everything else), dynamic per-run INT8 linear layers.

For graphs that hold both convolutions and weight-bearing MatMul / Gemm nodes (a CNN's classifier, a conv stem
before attention): the convolutions keep calibrated activation ranges — ONNX Runtime's fused ``QLinearConv`` —
while every linear layer quantizes its input with a scale computed on each run (``DynamicQuantizeMatMul``), the
one range that cannot be wrong for that input, and writes float.

ONNX Runtime's dynamic quantizer handles ``MatMul`` only, so a ``Gemm`` with a constant weight is first rewritten
as ``MatMul`` (+ ``Add`` of its bias): the same function (``alpha = beta = 1``, ``transA = 0``; ``transB`` folded
into a transposed copy of the weight). The bias ``Add`` stays float with its MatMul, so the linear's output never
goes back through an 8-bit grid. The quantization itself is
:func:`edgeq.onnx.quantize.quantize_onnx_hybrid` (``QuantOptions(dynamic_linears=True)``).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper, numpy_helper


def gemms_as_matmuls(model: onnx.ModelProto) -> int:
    """Rewrite each plain ``Gemm`` whose weight is an initializer as ``MatMul`` (+ bias ``Add``), in place.
    Returns how many were rewritten; Gemms with other attributes are left alone."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, done, transposed = [], 0, set()
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        plain = (n.op_type == "Gemm" and n.input[1] in inits and attrs.get("alpha", 1.0) == 1.0
                 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0))
        if not plain:
            nodes.append(n)
            continue
        weight = n.input[1]
        if attrs.get("transB", 0):
            transposed.add(weight)
            w = numpy_helper.to_array(inits[weight]).T.copy()
            weight = f"{n.input[1]}__t"
            if weight not in inits:
                inits[weight] = numpy_helper.from_array(w, weight)
                g.initializer.append(inits[weight])
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        out = f"{n.output[0]}__matmul" if bias else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], weight], [out], name=f"{n.name or 'gemm'}__matmul"))
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [n.output[0]], name=f"{n.name or 'gemm'}__bias"))
        done += 1
    if done:
        del g.node[:]
        g.node.extend(nodes)
        used = {i for n in g.node for i in n.input}  # (a Gemm weight read by a subgraph is not one of these)
        keep = [t for t in g.initializer if t.name in used or t.name not in transposed]
        del g.initializer[:]
        g.initializer.extend(keep)
    return done


def linear_nodes(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(MatMuls with a constant weight, the bias Adds that read only them and a constant) by node name."""
    g = model.graph
    consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    matmuls = [n for n in g.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in consts]
    outs = {n.output[0] for n in matmuls}
    adds = [n.name for n in g.node if n.op_type == "Add" and len(n.input) == 2
            and any(i in outs for i in n.input) and any(i in consts for i in n.input)]
    return [n.name for n in matmuls], adds


def has_convs_and_linears(path: Path) -> bool:
    """Whether the hybrid changes anything: the graph has a Conv and a linear layer (MatMul / Gemm with a weight)."""
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    inits = {t.name for t in g.initializer}
    conv = any(n.op_type == "Conv" for n in g.node)
    linear = any(n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits for n in g.node)
    return conv and linear
