"""Inspecting a PT2E graph around calibration: its observers, whether calibration reached each of them, and the
integer-valued compute the quantizer kept out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.errors import QuantizationError
from edgeq.executorch.graph_filters import is_float_node

if TYPE_CHECKING:
    import torch


def observers_of(gm: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    """observer module name -> the graph node it observes."""
    # optional: the [executorch] extra
    from torchao.quantization.pt2e.observer import _is_activation_post_process

    modules = dict(gm.named_modules())
    out = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and _is_activation_post_process(modules.get(str(node.target))):
            out[str(node.target)] = node.args[0] if node.args else node
    return out


def check_observers_reached(gm: torch.fx.GraphModule, observers: dict[str, torch.fx.Node]) -> None:
    """An observer whose range is still empty never saw data: its scale would not come from calibration."""
    import torch  # heavy: torch, imported only where a model is built or run

    modules = dict(gm.named_modules())
    missed = []
    for name, observed in observers.items():
        obs = modules[name]
        lo, hi = getattr(obs, "min_val", None), getattr(obs, "max_val", None)
        if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
            continue
        if lo.numel() == 0 or not bool(torch.isfinite(lo).all()) or not bool(torch.isfinite(hi).all()):
            missed.append((name, observed))
    if missed:
        name, node = missed[0]
        where = _user_location(node)
        raise QuantizationError(
            f"calibration data never reached observer {name!r} on node {getattr(node, 'name', node)!r}{where}"
            + (f" (and {len(missed) - 1} more)" if len(missed) > 1 else "")
            + "; its scale would be a meaningless default, not a measured range",
            "calibrate with samples that exercise every branch of the model, or remove the unused branch",
        )


def _user_location(node: torch.fx.Node) -> str:
    stack = getattr(node, "meta", {}).get("nn_module_stack") or {}
    if stack:
        path, _ = list(stack.values())[-1]
        return f" in module {path!r}" if path else ""
    return ""


def float_compute_nodes(gm: torch.fx.GraphModule) -> dict[str, list[str]]:
    """Integer-valued compute nodes (index paths) that the filter kept out of quantization."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and not is_float_node(node) and node.meta.get("val") is not None:
            target = getattr(node.target, "__name__", str(node.target))
            if "quantize" not in target:
                names.append(node.name)
    return {"integer": names[:50]}
