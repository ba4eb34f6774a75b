"""Unstructured magnitude pruning: the smallest ``ratio`` of each Linear / Conv2d weight tensor is zeroed, the
mask is re-applied after every fine-tune step, and the compressed size is estimated honestly.

Dense runtimes (ONNX Runtime CPU, XNNPACK) store and multiply the zeros: the artifact is as large and as fast as
before. Only a sparse-aware format or a compressed download (zeros entropy-code well) benefits; the record says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.compress.registry import CompressContext, register, weight_layers
from edgeq.compress.spec import SparseConfig
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch


def masks_for(model: torch.nn.Module, ratio: float) -> dict[str, torch.Tensor]:
    masks: dict[str, torch.Tensor] = {}
    for name, mod in weight_layers(model):
        w = mod.weight.detach()
        k = int(w.numel() * ratio)
        if k < 1:
            continue
        threshold = w.abs().flatten().kthvalue(k).values
        masks[name] = (w.abs() > threshold).to(w.dtype)
    return masks


def sparse_int8_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights as INT8 non-zeros + a 1-bit occupancy mask (what a sparse format would store)."""
    total = 0
    for _, mod in weight_layers(model):
        w = mod.weight.detach()
        total += int((w != 0).sum()) + (w.numel() + 7) // 8
    return total


@register("sparse")
def apply(model: torch.nn.Module, cfg: SparseConfig, ctx: CompressContext) -> tuple[torch.nn.Module, JSONObject]:
    import torch  # heavy: torch, imported only where a model is built or run

    masks = masks_for(model, cfg.ratio)
    modules = dict(model.named_modules())

    def reapply(m: torch.nn.Module) -> None:
        with torch.no_grad():
            for name, mask in masks.items():
                modules[name].weight.mul_(mask)

    reapply(model)
    tune = ctx.trainer.fine_tune(model, ctx.steps, f"sparse {cfg.ratio:.0%} fine-tune", after_step=reapply)
    total = sum(int(modules[n].weight.numel()) for n in masks)
    zeros = sum(int((modules[n].weight == 0).sum()) for n in masks)
    return model, {"weights": total, "zeros": zeros, "sparsity": round(zeros / max(total, 1), 4),
                   "sparse_int8_bytes": sparse_int8_bytes(model), "fine_tune": tune,
                   "note": "unstructured sparsity: dense runtimes (ONNX Runtime, XNNPACK) store and compute the "
                           "zeros, so the artifact is neither smaller nor faster; sparse_int8_bytes is what a sparse "
                           "format would need, and the gzip size of each artifact shows the download saving"}
