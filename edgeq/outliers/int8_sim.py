"""The static INT8 scheme simulated in torch: each conv / linear input fake-quantized per tensor from its
calibration range, the weights on their per-channel INT8 grid (what the learned rounding and the preparation's
scheme prediction measure against)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from edgeq.outliers.stats import batches, first_tensor, run_hooked

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.stats import ObserveHook, RewriteHook

    Layer = torch.nn.Conv2d | torch.nn.Linear


def fake_quant(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """Per-tensor asymmetric fake quantization with the range including 0 (ORT QDQ / XNNPACK static)."""
    import torch  # heavy: torch, imported only where a model is built or run

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = (1 << bits) - 1  # not 2**bits: int ** int is typed Any (a negative power is a float)
    scale = max(hi - lo, 1e-12) / levels
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, levels) - zp) * scale


def input_ranges(model: torch.nn.Module, layers: Mapping[str, Layer], calib: Mapping[str, np.ndarray],
                 samples: int) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Each layer's input min/max over the calibration set (float model) and the order layers run in."""
    ranges: dict[str, tuple[float, float]] = {}
    order: list[str] = []

    def hook(name: str) -> ObserveHook:
        def pre(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach()
            lo, hi = float(x.min()), float(x.max())
            if name not in ranges:
                order.append(name)
                ranges[name] = (lo, hi)
            else:
                ranges[name] = (min(lo, ranges[name][0]), max(hi, ranges[name][1]))
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    run_hooked(model, calib, samples, handles)
    return ranges, order


# Rows the whole-model simulation runs: a few batches, enough to rank two preparations of one model.
SIMULATION_SAMPLES = 64


def simulated_int8_error(model: torch.nn.Module, reference: torch.nn.Module, calib: Mapping[str, np.ndarray],
                         samples: int = SIMULATION_SAMPLES, bits: int = 8) -> float:
    """Relative squared output error of ``model`` run as the static INT8 scheme (every conv / linear input
    fake-quantized per tensor from its calibration min/max, weights on their per-channel INT8 grid) against the
    float ``reference``, on the first ``samples`` calibration rows. ``bits=0``: float activations (the weights'
    share of the error alone)."""
    import torch  # heavy: torch, imported only where a model is built or run

    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)}
    ranges, _ = input_ranges(model, layers, calib, samples)
    saved = {n: m.weight.detach().clone() for n, m in layers.items()}

    def hook(name: str) -> RewriteHook:
        def pre(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (fake_quant(args[0], *ranges[name], bits), *args[1:]) if name in ranges else args
        return pre

    num = den = 0.0
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()] if bits else []
    try:
        with torch.no_grad():
            for n, m in layers.items():
                w = saved[n]
                s = (w.abs().amax(tuple(range(1, w.dim())), keepdim=True) / 127.0).clamp(min=1e-12)
                m.weight.copy_(torch.clamp(torch.round(w / s), -127, 127) * s)
            for args in batches(calib, samples):
                ref, out = first_tensor(reference(*args)).float(), first_tensor(model(*args)).float()
                num += float(((out - ref) ** 2).sum())
                den += float((ref**2).sum())
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, m in layers.items():
                m.weight.copy_(saved[n])
    return num / max(den, 1e-30)
