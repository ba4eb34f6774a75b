"""Weight clustering (palettisation): each Linear / Conv2d weight tensor snaps to ``k`` k-means centroids.

Fine-tuning keeps the sharing: after each optimizer step every weight is moved back to its cluster's mean, so
the centroids learn while the palette stays. Neither ONNX Runtime nor XNNPACK executes palettised weights, so the
artifacts carry the dequantized (centroid-valued) weights; ``palettised_bytes`` is what a palette format (Core ML
``palettize_weights``: log2(k)-bit indices + a float16 palette per layer) would store, and the record says so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from edgeq.compress.registry import CompressContext, register, weight_layers
from edgeq.compress.spec import ClusterConfig
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch

KMEANS_ITERS = 25


def kmeans_1d(values: torch.Tensor, k: int, iters: int = KMEANS_ITERS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor with centroids initialised at quantiles (deterministic). -> (centroids, idx)"""
    import torch  # heavy: torch, imported only where a model is built or run

    v = values.detach().flatten().double()
    k = min(k, int(torch.unique(v).numel()))
    qs = torch.linspace(0, 1, k, dtype=torch.float64)
    # torch.quantile refuses inputs over 16 M elements; a sorted-index lookup is the same thing
    centroids = v.sort().values[(qs * (v.numel() - 1)).round().long()]
    for _ in range(iters):
        idx = _nearest(v, centroids)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).double()
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids, _nearest(v, centroids)


def _nearest(v: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid, in O(n log k) memory-light form (1-D centroids stay sorted under Lloyd)."""
    import torch  # heavy: torch, imported only where a model is built or run

    c, order = centroids.sort()
    mids = (c[1:] + c[:-1]) / 2
    return order[torch.bucketize(v, mids)]


def _snap(weight: torch.Tensor, idx: torch.Tensor, k: int) -> None:
    """Set every weight to its cluster's current mean (keeps the palette through fine-tuning)."""
    import torch  # heavy: torch, imported only where a model is built or run

    with torch.no_grad():
        v = weight.detach().flatten().double()
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).double().clamp(min=1)
        weight.copy_((sums / counts)[idx].reshape(weight.shape).to(weight.dtype))


def palettised_bytes(n_weights: int, k: int) -> int:
    return (n_weights * max(1, math.ceil(math.log2(k))) + 7) // 8 + 2 * k


@register("cluster")
def apply(model: torch.nn.Module, cfg: ClusterConfig, ctx: CompressContext) -> tuple[torch.nn.Module, JSONObject]:
    import torch  # heavy: torch, imported only where a model is built or run

    assignments = {}
    layers: list[JSONObject] = []
    for name, mod in weight_layers(model):
        centroids, idx = kmeans_1d(mod.weight, cfg.clusters)
        assignments[name] = (mod, idx, int(centroids.numel()))
        _snap(mod.weight, idx, int(centroids.numel()))

    def resnap(m: torch.nn.Module) -> None:
        for mod, idx, k in assignments.values():
            _snap(mod.weight, idx, k)

    tune = ctx.trainer.fine_tune(model, ctx.steps, f"cluster {cfg.clusters} fine-tune", after_step=resnap)
    dense = palettised = 0
    for name, (mod, _, k) in assignments.items():
        n = int(mod.weight.numel())
        distinct = int(torch.unique(mod.weight.detach()).numel())
        layers.append({"layer": name, "weights": n, "distinct_values": distinct})
        dense += n
        palettised += palettised_bytes(n, k)
    return model, {"clusters": cfg.clusters, "layers": layers, "weights": dense, "float32_bytes": 4 * dense,
                   "int8_bytes": dense, "palettised_bytes": palettised, "fine_tune": tune,
                   "note": "ONNX Runtime and XNNPACK cannot execute palettised weights: the artifacts carry the "
                           "dequantized (centroid-valued) weights, so their size and speed are those of INT8; "
                           "palettised_bytes is the size a palette format would store"}
