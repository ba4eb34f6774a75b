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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def halve_float_linears(gm: torch.fx.GraphModule, keep: Callable[[torch.fx.Node], bool]) -> list[str]:
    """Rewrite, in place, every float32 ``aten.linear`` that ``keep`` accepts as a float16 linear between casts.

    A linear is float32 when its weight is a float32 module attribute (an INT8 weight arrives through a
    dequantize node). Returns the rewritten nodes' names, in graph order."""
    changed = [_halve(gm, node) for node in list(gm.graph.nodes) if _is_float_linear(gm, node) and keep(node)]
    if changed:
        _drop_unused_attrs(gm)
        gm.graph.lint()
        gm.recompile()
    return changed


def _halve(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    """``node`` (a float32 linear) as ``cast(fp16) -> linear(fp16 weight, fp16 bias) -> cast(fp32)``."""
    import torch  # heavy: torch, imported only where a model is built or run

    x, weight, *rest = node.args
    bias = rest[0] if rest else None
    assert isinstance(weight, torch.fx.Node)  # _is_float_linear checked it is a get_attr node
    with gm.graph.inserting_before(node):
        x16 = gm.graph.call_function(torch.ops.aten._to_copy.default, (x,), {"dtype": torch.float16})
        w16 = _half_attr(gm, weight)
        b16 = _half_attr(gm, bias) if isinstance(bias, torch.fx.Node) else None
    node.args = (x16, w16, b16)
    with gm.graph.inserting_after(node):
        back = gm.graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": torch.float32})
    node.replace_all_uses_with(back, delete_user_cb=lambda user: user is not back)
    for meta_key in ("nn_module_stack", "stack_trace"):  # the casts belong to the layer they wrap
        if meta_key in node.meta:
            x16.meta[meta_key] = back.meta[meta_key] = node.meta[meta_key]
    return node.name


def _is_float_linear(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    import torch  # heavy: torch, imported only where a model is built or run

    if node.op != "call_function" or node.target is not torch.ops.aten.linear.default or len(node.args) < 2:
        return False
    weight = node.args[1]
    if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
        return False
    value = _attr(gm, str(weight.target))
    return isinstance(value, torch.Tensor) and value.dtype == torch.float32


def _half_attr(gm: torch.fx.GraphModule, source: torch.fx.Node) -> torch.fx.Node:
    """A new ``get_attr`` node holding a float16 copy of ``source``'s tensor (a buffer: nothing trains it)."""
    name = str(source.target).replace(".", "_") + "_fp16"
    if not hasattr(gm, name):
        gm.register_buffer(name, _attr(gm, str(source.target)).detach().half())
    return gm.graph.get_attr(name)


def _attr(gm: torch.fx.GraphModule, dotted: str) -> torch.Tensor:
    owner, _, leaf = dotted.rpartition(".")
    module = gm.get_submodule(owner) if owner else gm
    value: torch.Tensor = getattr(module, leaf)
    return value


def _drop_unused_attrs(gm: torch.fx.GraphModule) -> None:
    """Remove the float32 weights no node reads any more, so the program does not carry both copies."""
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            owner, _, leaf = str(node.target).rpartition(".")
            module = gm.get_submodule(owner) if owner else gm
            gm.graph.erase_node(node)
            if not any(n.op == "get_attr" and n.target == node.target for n in gm.graph.nodes):
                delattr(module, leaf)
