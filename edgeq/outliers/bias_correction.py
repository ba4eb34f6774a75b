"""Bias correction for INT8 weights (Nagel et al. 2019, "Data-Free Quantization", section 4.2).

Rounding a layer's weights to INT8 shifts the *mean* of its outputs: ``E[(W_q - W) x] = (W_q - W) E[x]``. In
depthwise convolutions (9 weights per channel) that shift does not average out and it accumulates through the
network. With the input means measured on calibration data, the expected shift is subtracted from the bias in
float, so after the exporter rounds the weights the expected output is the float one again.

The rounding simulated here is what both backends apply to weights: symmetric INT8, one scale per output channel
(ONNX Runtime QDQ with ``per_channel`` and XNNPACK's per-channel config). Layers are corrected in one pass with
input means from the float model, which for per-channel weight rounding is within a few percent of the
sequential variant and needs one calibration sweep instead of one per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.outliers.stats import run_hooked

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.stats import ObserveHook


@dataclass(frozen=True)
class BiasCorrectionConfig:
    """Correct Conv2d (and optionally Linear) biases for the mean shift of per-channel INT8 weight rounding."""

    calibration_samples: int = 32
    linear: bool = False  # transformers: per-token activations make the mean shift negligible; opt in
    min_relative_shift: float = 1e-3  # skip layers whose correction is below this fraction of the output scale
    version: int = 1

    def __post_init__(self) -> None:
        if self.calibration_samples < 1:
            raise UsageError(f"calibration_samples must be >= 1, got {self.calibration_samples}")

    def to_dict(self) -> JSONObject:
        return asdict(self)


def per_channel_int8(w: torch.Tensor) -> torch.Tensor:
    """Symmetric INT8 round trip with one scale per output channel (dim 0)."""
    amax = w.abs().reshape(w.shape[0], -1).amax(1).clamp(min=1e-12)
    scale = (amax / 127.0).reshape(-1, *([1] * (w.dim() - 1)))
    return (w / scale).round().clamp(-127, 127) * scale


def _input_means(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
                 layers: Mapping[str, torch.nn.Conv2d | torch.nn.Linear], max_samples: int) -> dict[str, torch.Tensor]:
    """Per-input-channel mean of each layer's input over the calibration set (spatial positions included)."""

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> ObserveHook:
        def pre(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float()
            if x.dim() == 4:  # N C H W
                s, n = x.sum((0, 2, 3)), x.shape[0] * x.shape[2] * x.shape[3]
            else:
                flat = x.reshape(-1, x.shape[-1])
                s, n = flat.sum(0), flat.shape[0]
            sums[name] = sums[name] + s if name in sums else s
            counts[name] = counts.get(name, 0) + n
        return pre

    run_hooked(model, calib, max_samples, [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()])
    return {n: sums[n] / counts[n] for n in sums}


def correct_bias(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
                 cfg: BiasCorrectionConfig = BiasCorrectionConfig()) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Adjust biases in place (adding a zero bias where a layer has none). Returns (model, per-layer log)."""
    import torch  # heavy: torch, imported only where a model is built or run

    kinds: tuple[type, ...] = (torch.nn.Conv2d, torch.nn.Linear) if cfg.linear else (torch.nn.Conv2d,)
    layers = {n: m for n, m in model.named_modules()
              if isinstance(m, kinds) and isinstance(m, torch.nn.Conv2d | torch.nn.Linear)}
    if not layers:
        return model, []
    means = _input_means(model, calib, layers, cfg.calibration_samples)
    log: list[JSONObject] = []
    with torch.no_grad():
        for name, m in layers.items():
            if name not in means:
                continue  # never reached by the calibration data: nothing measured, nothing changed
            w = m.weight.detach().float()
            dw = per_channel_int8(w) - w
            mu = means[name]
            if isinstance(m, torch.nn.Conv2d):
                groups = m.groups
                per_group_in = w.shape[1]
                mu_g = mu.reshape(groups, per_group_in)  # input channels of each group
                out_per_group = w.shape[0] // groups
                mu_out = mu_g.repeat_interleave(out_per_group, dim=0)  # [out, in/groups]
                shift = (dw.sum((2, 3)) * mu_out).sum(1)
            else:
                shift = dw @ mu
            ref = (w.reshape(w.shape[0], -1).abs().sum(1) * mu.abs().mean()).clamp(min=1e-12)
            rel = float((shift.abs() / ref).max())
            if rel < cfg.min_relative_shift:
                continue
            if m.bias is None:
                m.bias = torch.nn.Parameter(torch.zeros(w.shape[0], dtype=m.weight.dtype))
            m.bias -= shift.to(m.bias.dtype)
            log.append({"layer": name, "max_relative_shift": round(rel, 5)})
    return model, log
