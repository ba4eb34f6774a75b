"""Low-rank factorisation: W (out×in) ≈ U·V by truncated SVD, rank = the fewest singular values holding
``energy`` of Σσ². A layer is replaced by two smaller ones only when that saves parameters; then fine-tune.
Linear → Linear(in, r, bias=False) · Linear(r, out); 1×1 Conv2d likewise with 1×1 convs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.compress.registry import CompressContext, param_count, register, weight_layers
from edgeq.compress.spec import LowRankConfig
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch


def rank_for(sigma: torch.Tensor, energy: float) -> int:
    import torch  # heavy: torch, imported only where a model is built or run

    e = sigma.double() ** 2
    frac = torch.cumsum(e, 0) / e.sum()
    return int((frac < energy).sum().item()) + 1


def factorise(mod: torch.nn.Linear | torch.nn.Conv2d, energy: float) -> torch.nn.Sequential | None:
    """The factorised replacement for ``mod``, or None when it would not be smaller."""
    import torch  # heavy: torch, imported only where a model is built or run
    from torch import nn

    is_conv = isinstance(mod, nn.Conv2d)
    if is_conv and (mod.kernel_size != (1, 1) or mod.groups != 1 or mod.stride != (1, 1) or mod.padding != (0, 0)
                    or mod.dilation != (1, 1)):
        return None
    w = mod.weight.detach().reshape(mod.weight.shape[0], -1).double()
    out_f, in_f = w.shape
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = rank_for(s, energy)
    if r * (in_f + out_f) >= out_f * in_f:
        return None
    root = s[:r].sqrt()
    first_w = (root[:, None] * vh[:r]).float()
    second_w = (u[:, :r] * root[None, :]).float()
    bias = mod.bias is not None
    if is_conv:
        first: nn.Conv2d | nn.Linear = nn.Conv2d(in_f, r, 1, bias=False)
        second: nn.Conv2d | nn.Linear = nn.Conv2d(r, out_f, 1, bias=bias)
        first_w, second_w = first_w[:, :, None, None], second_w[:, :, None, None]
    else:
        first, second = nn.Linear(in_f, r, bias=False), nn.Linear(r, out_f, bias=bias)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if mod.bias is not None and second.bias is not None:
            second.bias.copy_(mod.bias.detach())
    return nn.Sequential(first, second)


@register("lowrank")
def apply(model: torch.nn.Module, cfg: LowRankConfig, ctx: CompressContext) -> tuple[torch.nn.Module, JSONObject]:
    before = param_count(model)
    layers: list[JSONObject] = []
    for name, mod in weight_layers(model):
        if not name:
            continue  # the model itself is one layer: nothing to swap it into
        new = factorise(mod, cfg.energy)
        if new is None:
            continue
        parent_path, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, leaf, new)
        layers.append({"layer": name, "shape": list(mod.weight.shape[:2]), "rank": int(next(new.parameters()).shape[0])})
    tune = ctx.trainer.fine_tune(model, ctx.steps, f"lowrank {cfg.energy:g} fine-tune") if layers else {"steps": 0}
    return model, {"params_before": before, "params_after": param_count(model), "layers": layers, "fine_tune": tune,
                   "note": "factorised layers run as two smaller matmuls on every runtime" if layers else
                           "no layer gets smaller at this energy: the model is unchanged"}
