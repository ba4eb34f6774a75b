"""Which FX nodes the XNNPACK quantizer may touch: float-only nodes, not mask-derived ones, not user exclusions.

The XNNPACK annotators match ``add``/``mul``/``cat`` by op, not by dtype, so an integer index path (token ids,
position ids computed from an attention mask) would get observers and fail after conversion; tensors computed only
from integer inputs (an additive attention bias ``(1 - mask) * -1e4``) would stretch INT8 ranges to ±10⁴.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgeq.config import QuantOptions
from edgeq.errors import UsageError

if TYPE_CHECKING:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import QuantPattern


def is_float_node(node: torch.fx.Node) -> bool:
    """True when the node's output and every tensor input are floating point (safe to quantize)."""
    import torch  # heavy: torch, imported only where a model is built or run

    def floating(v: object) -> bool:
        if isinstance(v, torch.Tensor):
            return v.dtype.is_floating_point
        if isinstance(v, (list, tuple)):
            return all(floating(x) for x in v)
        return True  # symbolic ints, None: not tensors

    if not floating(node.meta.get("val")):
        return False
    for arg in node.all_input_nodes:
        if arg.op == "get_attr":
            continue  # weights; their dtype is checked by the annotator
        if not floating(arg.meta.get("val")):
            return False
    return True


def float_valued(node: torch.fx.Node) -> bool:
    import torch  # heavy: torch, imported only where a model is built or run

    v = node.meta.get("val")
    return isinstance(v, torch.Tensor) and v.dtype.is_floating_point


def mask_derived_nodes(model: torch.fx.GraphModule) -> set[str]:
    """Nodes computed only from integer/bool inputs and Python scalars — e.g. BERT's additive attention bias
    ``(1 - mask) * -10000``. They are not activations: quantizing them (or the ``scores + bias`` add they feed)
    to INT8 stretches the range to ±10⁴ and wipes out the attention scores. They and their consumers stay float.
    """
    import torch  # heavy: torch, imported only where a model is built or run

    derived: set[str] = set()
    for n in model.graph.nodes:
        if n.op == "placeholder":
            v = n.meta.get("val")
            if isinstance(v, torch.Tensor) and not v.dtype.is_floating_point:
                derived.add(n.name)
        elif n.op == "call_function":
            inputs = n.all_input_nodes
            if inputs and all(a.name in derived for a in inputs):
                derived.add(n.name)
    return derived


def convert_float_scalars_to_attrs(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """XNNPACKQuantizer's scalar rewrite (``x + 1`` → ``x + tensor(1.0)``), restricted to float nodes.

    The stock rewrite turns the scalar of *every* ``add``/``mul`` into a float tensor, so an integer index path
    such as ``cumsum(mask) * mask + 1`` (position ids) silently becomes float and ``embedding`` then fails
    with "tensors used as indices must be long". Integer arithmetic keeps its Python scalars here.
    """
    # optional: the [executorch] extra
    import torch
    from torchao.quantization.pt2e.utils import get_new_attr_name_with_prefix

    for n in model.graph.nodes:
        if n.op != "call_function" or n.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor):
            continue
        if not is_float_node(n):
            continue
        new_args = []
        for a in n.args:
            if isinstance(a, torch.fx.Node) or not isinstance(a, (int, float)):
                new_args.append(a)
                continue
            name = get_new_attr_name_with_prefix("_tensor_constant_")(model)
            value = torch.tensor(float(a))
            model.register_buffer(name, value)
            with model.graph.inserting_before(n):
                node = model.graph.create_node("get_attr", name, (), {})
                node.meta["val"] = n.meta["val"].fake_mode.from_tensor(value, static_shapes=True)
            new_args.append(node)
        n.args = tuple(new_args)
    model.recompile()
    return model


def op_short(node: torch.fx.Node) -> str:
    """``aten.linear.default`` -> ``linear``."""
    name = getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0]


def module_paths(node: torch.fx.Node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    return [str(path) for path, _ in stack.values() if path]


def resolve_exclusions(gm: torch.fx.GraphModule, quant: QuantOptions) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Map ``--exclude-node`` / ``--exclude-op-type`` onto the PT2E graph, or refuse names it does not have.

    A node name may be an FX node (``linear_3``) or a module path (``bert.encoder.layer.0.output.dense``: every
    node inside it). An op type is an aten op name (``linear``, ``conv2d``). ONNX node names do not exist in the
    torch graph; silently ignoring them would ship a ``.pte`` that quantizes what the user asked to keep float.
    """
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    names = {n.name for n in nodes}
    modules = {p for n in nodes for p in module_paths(n)}
    ops = {op_short(n) for n in nodes}
    ex_nodes = tuple(x for x in quant.nodes_to_exclude if x in names)
    ex_modules = tuple(x for x in quant.nodes_to_exclude if x in modules and x not in names)
    unknown = [x for x in quant.nodes_to_exclude if x not in names and x not in modules]
    bad_ops = [x for x in quant.op_types_to_exclude if x not in ops]
    if unknown or bad_ops:
        what = ", ".join([*(repr(u) for u in unknown[:5]), *(f"op type {b!r}" for b in bad_ops[:5])])
        sample_mod = sorted(modules)[:3]
        raise UsageError(
            f"the .pte (PT2E) graph has no {what} to keep in float",
            "for --format pte name a module path (e.g. " + ", ".join(sample_mod or ["<none>"])
            + f"), an FX node name or an aten op type ({', '.join(sorted(ops)[:6])}, ...); ONNX node names "
            "only apply to --format onnx, so export the formats separately",
        )
    return ex_nodes, ex_modules, tuple(quant.op_types_to_exclude)


def excluded(node: torch.fx.Node, exclude_nodes: tuple[str, ...], exclude_modules: tuple[str, ...],
             exclude_ops: tuple[str, ...]) -> bool:
    if node.name in exclude_nodes or op_short(node) in exclude_ops:
        return True
    return any(p == m or p.startswith(m + ".") for p in module_paths(node) for m in exclude_modules)


def patterns_that_can_match(model: torch.fx.GraphModule, patterns: Sequence[QuantPattern]
                            ) -> list[QuantPattern]:
    """The XNNPACK quantizer's patterns (``QuantPattern``: name, is_dynamic, is_qat, op_overloads) less the
    conv + batch-norm ones that cannot match MODEL.

    Every ``prepare_pt2e`` runs the conv-bn annotators, and each traces its pattern through ``torch.export`` for
    every conv kind and ReLU variant, matching or not: about 10 traces, seconds per prepare on 2 cores, spent by
    every build, search trial and explain rebuild. A conv-bn pattern needs a batch-norm node and one of its conv
    ops in the graph; without both it matches nothing, so leaving it out annotates the same nodes."""
    targets = {n.target for n in model.graph.nodes if n.op == "call_function"}
    ops = targets | {getattr(t, "overloadpacket", t) for t in targets}
    has_bn = any("batch_norm" in str(t) for t in targets)
    return [p for p in patterns if not p.is_qat or (has_bn and bool(ops & set(p.op_overloads)))]
