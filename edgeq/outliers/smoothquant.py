"""SmoothQuant-style migration of activation outliers into the weights (Xiao et al. 2023).

Real transformers carry a few input channels 10-100x larger than the rest (LayerNorm outputs, GELU outputs
feeding the FFN down-projection). One INT8 scale per tensor (or per token) then either clips those channels or
crushes all others. For a Linear ``y = x W^T + b`` and a positive per-channel ``s``,
``y = (x / s) (W s)^T + b`` exactly; choosing ``s_j = max|x_j|^a / max|W_:,j|^(1-a)`` flattens the activation
channels while the per-output-channel INT8 weights absorb the spread. The strength ``a`` is picked *per input
tensor* from the calibration data: the one whose simulated INT8 output error is smallest (``a = 0`` — leave the
layer alone — is always a candidate, so the migration never makes a layer worse on the calibration rows).

The scale is applied as an explicit ``x * (1/s)`` in front of the Linear (a float elementwise op, negligible next
to the matmul): folding it into the producer is only exact when that producer feeds nothing else, which post-norm
encoders (BERT: the LayerNorm output is also the residual) violate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.outliers.stats import InputStats, batches, linear_input_stats

if TYPE_CHECKING:
    import torch

    # a weight tensor's quantize-dequantize round trip, as the deployed kernel would see it
    WeightRoundTrip = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SmoothQuantConfig:
    """``alphas``: migration strengths tried per input tensor. ``activation``: the activation quantizer the
    strength is chosen for — ``per_tensor`` (static QDQ, ORT's dynamic MatMul) or ``per_token`` (XNNPACK's
    dynamically quantized linear); ``per_tensor`` is the stricter choice when one model feeds both formats."""

    alphas: tuple[float, ...] = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)
    activation: str = "per_tensor"
    calibration_samples: int = 64
    min_gain: float = 0.05  # apply only when the simulated error drops by at least 5 %
    version: int = 1

    def __post_init__(self) -> None:
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise UsageError(f"SmoothQuant strengths must lie in [0, 1], got {self.alphas}")
        if self.activation not in ("per_tensor", "per_token"):
            raise UsageError(f"unknown activation granularity {self.activation!r}", "use per_tensor or per_token")

    def to_dict(self) -> JSONObject:
        return asdict(self)


def _smoothed_linear_class() -> type:
    import torch  # heavy: torch, imported only where a model is built or run

    class SmoothedLinear(torch.nn.Module):
        """``linear(x * inv_scale)`` with the weight's input channels multiplied by the scale."""

        inv_scale: torch.Tensor

        def __init__(self, linear: torch.nn.Linear, scale: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("inv_scale", (1.0 / scale).to(linear.weight.dtype))
            self.linear = torch.nn.Linear(linear.in_features, linear.out_features, linear.bias is not None)
            with torch.no_grad():
                self.linear.weight.copy_(linear.weight * scale[None, :])
                if linear.bias is not None:
                    self.linear.bias.copy_(linear.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear(x * self.inv_scale)
            return out

    return SmoothedLinear


def fake_int8(x: torch.Tensor, granularity: str) -> torch.Tensor:
    """Symmetric INT8 round trip: per tensor, per row (token) or per output channel (``per_channel``, rows)."""
    if granularity == "per_tensor":
        amax = x.abs().amax().clamp(min=1e-8)
    else:
        amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)
    scale = amax / 127.0
    return (x / scale).round().clamp(-127, 127) * scale


def int8_per_channel(w: torch.Tensor) -> torch.Tensor:
    return fake_int8(w, "per_channel")


def _error(rows: torch.Tensor, weights: list[torch.Tensor], scale: torch.Tensor, granularity: str,
           fake_weight: WeightRoundTrip) -> float:
    xs = fake_int8(rows / scale, granularity)
    err = 0.0
    for w in weights:
        ref = rows @ w.T
        q = xs @ fake_weight(w * scale[None, :]).T
        err += float(((q - ref) ** 2).mean() / (ref**2).mean().clamp(min=1e-12))
    return err


def choose_scale(stats: InputStats, weights: list[torch.Tensor], cfg: SmoothQuantConfig,
                 fake_weight: WeightRoundTrip = int8_per_channel) -> tuple[float, torch.Tensor, float, float]:
    """(alpha, scale, error with it, error without smoothing) for one input tensor and the layers reading it.
    FAKE_WEIGHT: the weights' quantize-dequantize round trip the error is simulated with (int8 per output channel;
    for 4-bit weights, moving range into them costs more, so the choice becomes AWQ's activation-aware balance,
    with the int8 activations in the error too)."""
    import torch  # heavy: torch, imported only where a model is built or run

    rows = torch.cat(stats.rows).float()
    wmax = torch.stack([w.abs().amax(0) for w in weights]).amax(0).clamp(min=1e-5)
    amax = stats.absmax.float().clamp(min=1e-5)
    base = _error(rows, weights, torch.ones_like(amax), cfg.activation, fake_weight)
    best = (0.0, torch.ones_like(amax), base)
    for a in cfg.alphas:
        if a == 0.0:
            continue
        s = (amax**a / wmax ** (1 - a)).clamp(min=1e-5)
        if not bool(torch.isfinite(s).all()):
            continue
        e = _error(rows, weights, s, cfg.activation, fake_weight)
        if e < best[2]:
            best = (a, s, e)
    return best[0], best[1], best[2], base


def _set_module(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fused_path_linear(model: torch.nn.Module, name: str) -> bool:
    """A Linear owned by torch.nn's fused transformer modules: their eval fast path reads ``linear.weight``
    directly instead of calling the Linear, so a wrapper in its place would be bypassed (or crash)."""
    import torch  # heavy: torch, imported only where a model is built or run

    parent_name = name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    return isinstance(parent, torch.nn.TransformerEncoderLayer | torch.nn.TransformerDecoderLayer
                      | torch.nn.MultiheadAttention)


def smooth_quant(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
                 cfg: SmoothQuantConfig = SmoothQuantConfig()) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Migrate activation outliers into the weights of every Linear, in place. Returns (model, per-input log).

    ``calib`` maps forward-argument names to calibration arrays (sample axis first), in forward order.
    """
    import torch  # heavy: torch, imported only where a model is built or run

    stats = linear_input_stats(model, calib, cfg.calibration_samples)
    log: list[JSONObject] = []
    replaced: list[tuple[str, torch.nn.Linear, JSONObject]] = []
    cls = _smoothed_linear_class()
    for st in stats:
        linears = [m for m in map(model.get_submodule, st.layers) if isinstance(m, torch.nn.Linear)]
        if len(linears) != len(st.layers):
            continue
        weights = [m.weight.detach().float() for m in linears]
        alpha, scale, err, base = choose_scale(st, weights, cfg)
        applied = alpha > 0 and err < base * (1 - cfg.min_gain)
        outlier_ratio = float(st.absmax.max() / st.absmax.median().clamp(min=1e-8))
        log.append({"layers": st.layers, "alpha": alpha if applied else 0.0, "outlier_ratio": round(outlier_ratio, 1),
                    "error_before": round(base, 6), "error_after": round(err if applied else base, 6)})
        if applied:
            for n, m in zip(st.layers, linears, strict=True):
                _set_module(model, n, cls(m, scale.to(m.weight.dtype)))
                replaced.append((n, m, log[-1]))
    _undo_where_fused_path_runs(model, calib, replaced)
    return model, log


def _undo_where_fused_path_runs(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
                                replaced: list[tuple[str, torch.nn.Linear, JSONObject]]) -> None:
    """torch.nn's TransformerEncoderLayer / MultiheadAttention take a fused eval fast path that reads
    ``linear.weight`` directly, bypassing (and crashing on) the wrapper — but only when the model calls the layer's
    own forward; models that call its sub-blocks are fine. One inference batch tells: if it fails, those Linears
    go back to plain (logged as skipped)."""
    import torch  # heavy: torch, imported only where a model is built or run

    fused = [r for r in replaced if fused_path_linear(model, r[0])]
    if not fused:
        return
    try:
        with torch.inference_mode():
            model(*next(batches(calib, 2, batch=2)))
    except AttributeError:
        for name, original, entry in fused:
            _set_module(model, name, original)
            entry.update(alpha=0.0, error_after=entry["error_before"],
                         skipped="torch.nn's fused transformer fast path reads the weight directly")
