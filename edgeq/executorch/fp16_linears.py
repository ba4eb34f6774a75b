"""Linear layers a ``.pte`` keeps out of INT8 store float16 weights and run as XNNPACK float16 GEMMs.

A layer the search keeps float (its activations carry outliers INT8 cannot hold) costs 4 bytes a weight in float32,
which is what pushed a 12-layer encoder's mixed-precision ``.pte`` over a 0.30x size cap while the ONNX artifact,
whose kept linears store float16 weights (:mod:`edgeq.onnx.mixed`), stayed under it. XNNPACK computes float16
GEMMs (natively on ARMv8.2-A cores with FP16 arithmetic, via conversion on x86-64 and ARMv8.0-A), so the kept linear
becomes ``cast(fp16) -> linear(fp16 weight, fp16 bias) -> cast(fp32)``: half the bytes, about three significant digits
per activation, which is far closer to float than INT8's 256 levels. XNNPACK does not take dtype casts, so the
two casts run on ExecuTorch's portable kernels (an elementwise copy of one activation each).

Measured on a two-linear net (the second kept float): the program runs on the host and under qemu ``-cpu
cortex-a72`` (ARMv8.0-A, no FP16 arithmetic) and ``cortex-a76`` (FP16 arithmetic); outputs agree with the float32
program to 1e-4 of their sum. A core with FP16 arithmetic accumulates in float16, so its error is the larger one:
the per-CPU emulation, not the host, is what checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def halve_float_linears(gm: torch.fx.GraphModule, keep: Callable[[torch.fx.Node], bool]) -> list[str]:
    """Rewrite, in place, every float32 ``aten.linear`` that ``keep`` accepts as a float16 linear between casts.

    A linear is float32 when its weight is a float32 module attribute (an INT8 weight arrives through a
    dequantize node). Returns the rewritten nodes' names, in graph order."""
    changed: list[str] = []
    for node in list(gm.graph.nodes):
        weight = _float_weight(gm, node)
        if weight is not None and keep(node):
            _halve(gm, node, weight)
            changed.append(node.name)
    if changed:
        gm.graph.lint()
        gm.recompile()
    return changed


def _halve(gm: torch.fx.GraphModule, node: torch.fx.Node, weight: torch.fx.Node) -> None:
    """``node`` (a float32 linear) as ``cast(fp16) -> linear(fp16 weight, fp16 bias) -> cast(fp32)``; the float32
    weight and bias are dropped once no node reads them, so the program does not carry both copies."""
    import torch  # heavy: torch, imported only where a model is built or run

    x, _, *rest = node.args
    bias = rest[0] if rest and isinstance(rest[0], torch.fx.Node) else None
    with gm.graph.inserting_before(node):
        x16 = gm.graph.call_function(torch.ops.aten._to_copy.default, (x,), {"dtype": torch.float16})
        w16 = _half_attr(gm, weight)
        b16 = _half_attr(gm, bias) if bias is not None else None
    node.args = (x16, w16, b16)
    with gm.graph.inserting_after(node):
        back = gm.graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": torch.float32})
    node.replace_all_uses_with(back, delete_user_cb=lambda user: user is not back)
    for meta_key in ("nn_module_stack", "stack_trace"):  # the casts belong to the layer they wrap
        if meta_key in node.meta:
            x16.meta[meta_key] = back.meta[meta_key] = node.meta[meta_key]
    for old in (weight, bias):
        if old is not None and not old.users:
            _drop_attr(gm, old)


def _float_weight(gm: torch.fx.GraphModule, node: torch.fx.Node) -> torch.fx.Node | None:
    """The ``get_attr`` node of ``node``'s weight when ``node`` is an ``aten.linear`` with a float32 weight."""
    import torch  # heavy: torch, imported only where a model is built or run

    if node.op != "call_function" or node.target is not torch.ops.aten.linear.default or len(node.args) < 2:
        return None
    weight = node.args[1]
    if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
        return None
    value = attrgetter(str(weight.target))(gm)
    return weight if isinstance(value, torch.Tensor) and value.dtype == torch.float32 else None


def _half_attr(gm: torch.fx.GraphModule, source: torch.fx.Node) -> torch.fx.Node:
    """A new ``get_attr`` node holding a float16 copy of ``source``'s tensor (a buffer: nothing trains it)."""
    name = str(source.target).replace(".", "_") + "_fp16"
    if not hasattr(gm, name):
        gm.register_buffer(name, attrgetter(str(source.target))(gm).detach().half())
    return gm.graph.get_attr(name)


def _drop_attr(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    """Erase an unread ``get_attr`` node, and its tensor once no other node names it."""
    target = str(node.target)
    gm.graph.erase_node(node)
    if not any(n.op == "get_attr" and n.target == target for n in gm.graph.nodes):
        owner, _, leaf = target.rpartition(".")
        delattr(gm.get_submodule(owner) if owner else gm, leaf)
