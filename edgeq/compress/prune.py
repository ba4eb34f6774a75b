"""Structured pruning: whole conv channels / linear rows leave the model, so tensors (and bytes, and latency on
any dense runtime) physically shrink.

1. Dependency tracking (:mod:`edgeq.compress.deps`) finds the groups that can shrink together.
2. Sensitivity pass: each group alone is pruned at the requested ratio and the distillation loss to the float
   model measured; the least sensitive third gets 1.5× the ratio, the most sensitive third 0.5× (the mean stays
   the requested ratio), capped at 0.9.
3. Pruning proceeds in steps (10 → 20 → 30 % …), each followed by a distillation fine-tune.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from edgeq.compress.deps import ChannelGroup, channel_scores, find_groups, shrink
from edgeq.compress.registry import CompressContext, param_count, register
from edgeq.compress.spec import PruneConfig
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch

MAX_LAYER_RATIO = 0.9


def _keep_count(channels: int, ratio: float) -> int:
    return max(1, int(round(channels * (1.0 - ratio))))


def _prune_group_to(model: torch.nn.Module, group: ChannelGroup, keep_n: int) -> None:
    if keep_n >= group.channels:
        return
    scores = channel_scores(model, group)
    keep = scores.topk(keep_n).indices
    shrink(model, group, keep)


def layer_ratios(model: torch.nn.Module, groups: list[ChannelGroup], ratio: float, ctx: CompressContext) -> dict[str, float]:
    """Per-producer ratios from a one-group-at-a-time sensitivity pass (distillation loss to the teacher)."""
    sens: dict[str, float] = {}
    for g in groups:
        trial = copy.deepcopy(model)
        _prune_group_to(trial, g, _keep_count(g.channels, ratio))
        sens[g.producer] = ctx.trainer.divergence(trial)
    order = sorted(sens, key=lambda k: sens[k])  # least sensitive first
    n = len(order)
    ratios = {}
    for i, name in enumerate(order):
        weight = 1.5 - (i / (n - 1) if n > 1 else 0.5)  # 1.5 (least sensitive) … 0.5 (most)
        ratios[name] = min(MAX_LAYER_RATIO, ratio * weight)
    return ratios


@register("prune")
def apply(model: torch.nn.Module, cfg: PruneConfig, ctx: CompressContext) -> tuple[torch.nn.Module, JSONObject]:
    groups = find_groups(model, ctx.example)
    if not groups:
        raise UsageError("prune: the model has no prunable channel groups",
                         "structured pruning needs a Conv2d/Linear whose outputs feed only channel-wise ops and "
                         "another Conv2d/Linear (no residual add or concat in between); try sparse:R instead")
    before = param_count(model)
    ctx.progress.stage(f"prune: sensitivity pass over {len(groups)} channel group(s)")
    ratios = layer_ratios(model, groups, cfg.ratio, ctx)
    original = {g.producer: g.channels for g in groups}
    steps = cfg.steps or min(3, max(1, math.ceil(cfg.ratio / 0.1 - 1e-9)))
    step_budget = ctx.steps // steps
    tune_log = []
    for s in range(1, steps + 1):
        current = {g.producer: g for g in find_groups(model, ctx.example)}
        for producer, orig in original.items():
            g = current.get(producer)
            if g is None:
                continue
            _prune_group_to(model, g, _keep_count(orig, ratios[producer] * s / steps))
        ctx.progress.stage(f"prune: step {s}/{steps}, {param_count(model):,} parameters; fine-tuning")
        tune_log.append(ctx.trainer.fine_tune(model, step_budget, f"prune step {s}/{steps}"))
    final = {g.producer: g.channels for g in find_groups(model, ctx.example)}
    layers: list[JSONObject] = [{"layer": p, "ratio": round(ratios[p], 4), "channels_before": original[p],
               "channels_after": final.get(p, original[p])} for p in original]
    return model, {"params_before": before, "params_after": param_count(model), "steps": steps,
                   "layers": layers, "fine_tune": tune_log,
                   "note": "structured: tensors physically shrink, so every runtime gets smaller and faster"}
