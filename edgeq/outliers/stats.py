"""Calibration statistics gathered once in torch: which layers share an input, and their input samples.

Layers are grouped by the *identity* of the tensor they read in a forward pass (Q, K and V projections read the
same LayerNorm output object), so no model-specific graph matching is needed. Inputs are cached on a row sample
so that per-layer choices (SmoothQuant strength, bias correction) are cheap to evaluate afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from edgeq.errors import DataError, UsageError

if TYPE_CHECKING:  # torch is imported when a preparation runs, not when edgeq is
    import torch
    from torch.utils.hooks import RemovableHandle

    # A forward pre-hook that observes a layer's inputs; one that returns them (changed) instead.
    ObserveHook: TypeAlias = Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], None]
    RewriteHook: TypeAlias = Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]
    # A forward hook that observes a layer's output.
    OutputHook: TypeAlias = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]


@dataclass
class InputStats:
    """For one input tensor: the layers reading it, per-channel |max| over calibration, sampled rows."""

    layers: list[str]
    absmax: torch.Tensor  # [in_features]
    rows: list[torch.Tensor] = field(default_factory=list)  # [n, in_features] chunks


def batches(calib: Mapping[str, np.ndarray], max_samples: int, batch: int = 16) -> Iterator[tuple[torch.Tensor, ...]]:
    """Calibration samples as contiguous torch tensors, ``batch`` at a time (batched: fast on large images)."""
    import torch  # heavy: torch, imported only where a model is built or run

    if not calib:
        raise DataError("no calibration inputs", "pass one array per model input, keyed by input name")
    n = min(max_samples, int(next(iter(calib.values())).shape[0]))
    if n <= 0:
        raise DataError("the calibration set is empty", "give at least one calibration sample")
    for s in range(0, n, batch):
        yield tuple(torch.from_numpy(np.ascontiguousarray(v[s:s + batch]).copy()) for v in calib.values())



def run_hooked(model: torch.nn.Module, calib: Mapping[str, np.ndarray], max_samples: int,
               handles: list[RemovableHandle]) -> None:
    """Forward the calibration batches through ``model`` (no grad) while ``handles`` are registered; remove them
    afterwards, also on error."""
    import torch  # heavy: torch, imported only where a model is built or run

    try:
        with torch.no_grad():
            for args in batches(calib, max_samples):
                model(*args)
    finally:
        for h in handles:
            h.remove()

def linear_input_stats(model: torch.nn.Module, calib: Mapping[str, np.ndarray], max_samples: int = 64,
                       rows_per_batch: int = 64, seed: int = 0) -> list[InputStats]:
    """Run the calibration set through ``model``; return one :class:`InputStats` per distinct Linear input."""
    import torch  # heavy: torch, imported only where a model is built or run

    gen = torch.Generator().manual_seed(seed)
    by_layer: dict[str, tuple[int, torch.Tensor]] = {}
    groups: dict[tuple[str, ...], InputStats] = {}
    # id -> (the tensor, readers). Holding the tensor keeps its id from being reused by a later tensor of the
    # same forward pass, which would merge unrelated layers into one group.
    seen_in_pass: dict[int, tuple[torch.Tensor, list[str]]] = {}

    def hook(name: str) -> ObserveHook:
        def pre(_mod: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            seen_in_pass.setdefault(id(x), (x, []))[1].append(name)
            by_layer[name] = (id(x), x.detach().reshape(-1, x.shape[-1]))
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            for args in batches(calib, max_samples):
                seen_in_pass.clear()
                by_layer.clear()
                model(*args)
                for _, names in seen_in_pass.values():
                    key = tuple(names)
                    flat = by_layer[names[0]][1]
                    amax = flat.abs().amax(0)
                    if key not in groups:
                        groups[key] = InputStats(list(key), amax)
                    else:
                        groups[key].absmax = torch.maximum(groups[key].absmax, amax)
                    take = torch.randperm(flat.shape[0], generator=gen)[:rows_per_batch]
                    groups[key].rows.append(flat[take].clone())
    finally:
        for h in handles:
            h.remove()
    return list(groups.values())


def first_tensor(out: object) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, or nested tuples / lists / dicts of them)."""
    import torch  # heavy: torch, imported only where a model is built or run

    while isinstance(out, tuple | list | dict):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"the model returned a {type(out).__name__}, not a tensor", "return tensors from forward()")
    return out
