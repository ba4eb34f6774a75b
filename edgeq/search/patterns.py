"""Known-fragile subgraphs in float ONNX graphs, found by structure (never by node name).

Static INT8 breaks transformers in a few well-known places: the attention-mask arithmetic (``(1-m)*-1e4``
puts a -10000 outlier into the scores' range so one INT8 step is ~80), Softmax, LayerNormalization (or its
decomposed ReduceMean/Sub/Pow/Sqrt/Div form), GELU (Gelu, or Erf with its Div/Add/Mul ring) and residual Adds
(two large activations summed before a norm). Each category maps to the node names a trial may keep in float.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import onnx

CATEGORIES: tuple[str, ...] = ("mask_arithmetic", "softmax", "layernorm", "gelu", "residual_add")

# Ops that transform a mask elementwise (or reshape it) without mixing in activations.
_MASK_PASSTHROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Sub", "Mul", "Add", "Not", "Neg",
                     "Equal", "Where", "Less", "Greater", "Div", "ReduceSum", "Clip", "Max", "Min"}
_LN_DECOMPOSED = {"ReduceMean", "Pow", "Sqrt", "Reciprocal"}


def fragile_nodes(model_path: str | Path) -> dict[str, list[str]]:
    """Category -> node names (graph order) for :data:`CATEGORIES`."""
    model = onnx.load(str(model_path), load_external_data=False)
    g = model.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for x in n.input:
            consumers[x].append(n)
        for o in n.output:
            producer[o] = n
    out: dict[str, list[str]] = {c: [] for c in CATEGORIES}

    # 1. mask arithmetic: walk forward from integer graph inputs. A node fed by a mask-derived tensor is marked;
    #    its outputs stay mask-derived only while every other input is a constant (pure mask transforms).
    #    Gather's index input is a token id, not a mask: embeddings are ordinary activations.
    int_inputs = [i.name for i in g.input if i.type.tensor_type.elem_type in (6, 7, 9, 12, 13)]
    derived = set(int_inputs)
    for n in g.node:  # ONNX graphs are topologically sorted
        fed = [x for x in n.input if x in derived]
        if not fed or (n.op_type in ("Gather", "GatherElements") and n.input[0] not in derived):
            continue
        out["mask_arithmetic"].append(n.name)
        others = [x for x in n.input if x and x not in derived]
        if n.op_type in _MASK_PASSTHROUGH and all(x in consts for x in others):
            derived.update(n.output)
    mask_nodes = set(out["mask_arithmetic"])

    for n in g.node:
        if n.op_type == "Softmax":
            out["softmax"].append(n.name)
        elif n.op_type in ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization") or (
                n.op_type in _LN_DECOMPOSED and _near_reduce_mean(n, producer, consumers)):
            out["layernorm"].append(n.name)
        elif n.op_type in ("Gelu", "FastGelu", "BiasGelu"):
            out["gelu"].append(n.name)
        elif n.op_type == "Erf":
            out["gelu"] += [m.name for m in _erf_ring(n, producer, consumers)]
        elif (n.op_type == "Add" and n.name not in mask_nodes and len(n.input) == 2
              and all(x not in consts for x in n.input)):
            # two live activations summed: a residual (skip) connection
            out["residual_add"].append(n.name)
    out["gelu"] = list(dict.fromkeys(out["gelu"]))
    return out


def _near_reduce_mean(n: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                      consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Pow/Sqrt/Reciprocal next to a ReduceMean, or a ReduceMean next to one of them or feeding a Sub (the mean
    subtracted): the decomposed LayerNorm's variance path. A CNN's global average pool (a ReduceMean feeding the
    classifier) is not a LayerNorm."""
    around = [m for m in [producer.get(x) for x in n.input] + [c for o in n.output for c in consumers.get(o, [])]
              if m is not None]
    if n.op_type == "ReduceMean":
        return any(m.op_type in ("Pow", "Sqrt", "Reciprocal", "Sub") for m in around)
    return any(m.op_type == "ReduceMean" for m in around)


def _erf_ring(erf: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
             consumers: dict[str, list[onnx.NodeProto]]) -> list[onnx.NodeProto]:
    """GELU(x) = x * 0.5 * (1 + erf(x / sqrt 2)): the Div before Erf and the Add/Mul chain after it."""
    ring = []
    pre = producer.get(erf.input[0])
    if pre is not None and pre.op_type in ("Div", "Mul"):
        ring.append(pre)
    ring.append(erf)
    frontier = list(erf.output)
    for _ in range(3):  # Add(1) -> Mul(0.5) -> Mul(x)
        nxt = [c for t in frontier for c in consumers.get(t, []) if c.op_type in ("Add", "Mul")]
        if not nxt:
            break
        ring += nxt
        frontier = [o for c in nxt for o in c.output]
    return ring


class Neighbourhood:
    """Producers and readers of each tensor, to keep a node's whole I/O in float (or 16-bit).

    ORT puts Q/DQ on a tensor when *any* quantized node touches it, so excluding one node is not enough: its
    input producers quantize their outputs and its readers quantize their inputs. A node's *island* is the node,
    the producers of its activation inputs and the readers of its outputs.
    """

    def __init__(self, model_path: str | Path) -> None:
        g = onnx.load(str(model_path), load_external_data=False).graph
        consts = {i.name for i in g.initializer}
        self.readers: dict[str, list[str]] = defaultdict(list)
        self.producer: dict[str, str] = {}
        self.inputs: dict[str, list[str]] = {}
        self.outputs: dict[str, list[str]] = {}
        self.op: dict[str, str] = {}
        for n in g.node:
            self.op[n.name] = n.op_type
            self.inputs[n.name] = [x for x in n.input if x and x not in consts]
            self.outputs[n.name] = [o for o in n.output if o]
            for x in n.input:
                if x:
                    self.readers[x].append(n.name)
            for o in n.output:
                self.producer[o] = n.name

    def island(self, node: str) -> list[str]:
        ins = [self.producer[x] for x in self.inputs.get(node, []) if x in self.producer]
        outs = [r for o in self.outputs.get(node, []) for r in self.readers.get(o, [])]
        return list(dict.fromkeys([*ins, node, *outs]))

    def with_input_producers(self, node: str) -> list[str]:
        """The node and the producers of its inputs: their outputs are exactly the node's I/O tensors."""
        ins = [self.producer[x] for x in self.inputs.get(node, []) if x in self.producer]
        return list(dict.fromkeys([*ins, node]))

    def with_light_input_producers(self, node: str) -> list[str]:
        """The node and those producers of its inputs that carry no weight matrix (the scores + mask Add, a scale
        Mul, ...): keeps the node's inputs out of INT8 without turning a MatMul's weights back into float32."""
        ins = [self.producer[x] for x in self.inputs.get(node, []) if x in self.producer]
        return list(dict.fromkeys([*(p for p in ins if self.op.get(p) not in _WEIGHTED), node]))


_WEIGHTED = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "MatMulInteger", "Attention", "EmbedLayerNormalization"}
