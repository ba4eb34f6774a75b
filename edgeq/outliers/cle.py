"""Cross-layer (activation-range) equalization for convolution nets (after Nagel et al. 2019, "Data-Free
Quantization", section 4.1), clamp-aware so that ReLU6 networks stay exact.

The failure it targets: after ``conv -> BN -> ReLU6`` the channels of one activation tensor span very different
ranges (in EfficientNet-Lite0 / MobileNet expand convs some channels reach 6, many stay below 0.1), and INT8 gives
the whole tensor *one* scale, so the quiet channels get a handful of levels. Because the activation is positively
homogeneous, channel ``i`` can be scaled by ``1/s_i`` in the producer (BN affine, or the conv's weight and bias)
and by ``s_i`` in the consumer's input weights without changing the float function:
``W2 · f(y) = (W2 s) · f(y / s)`` for ``f`` = ReLU / identity.

ReLU6 (``hardtanh(0, 6)``) is not scale-equivariant: ``clip(y/s, 0, 6) = clip(y, 0, 6)/s`` only where
``y <= 6·min(1, s)``. Scales are therefore chosen with ``s_i >= max_i / 6`` where ``max_i`` is channel ``i``'s
calibration maximum before the clamp, and channels that saturate keep ``s_i = 1``: the rewrite is exact on every
calibration sample, and beyond the calibration maximum it clips exactly where the INT8 activation range (itself
calibrated to that maximum) clips anyway.

With per-channel INT8 weights (what both backends use) the weight side of the classic DFQ balance matters only
for the consumer's input columns: for a depthwise consumer the scaling is free (one weight scale per channel), so
every quiet channel is raised to the tensor's range (``s_i = a_i / A``); for a 1x1 conv or Linear consumer the
strength ``s_i = (a_i / A)^alpha`` is chosen per pair by simulated INT8 error on sampled calibration pixels
(``alpha = 0``, leave alone, is always a candidate).

Pairs are found on a ``torch.export`` graph — ``conv -> [batch_norm] -> relu|hardtanh(0, c) -> [zero pad |
pooling | flatten | dropout] -> conv|linear`` with a single consumer along the chain — and mapped back to the
modules that own the weights, so no model-specific names are needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.outliers.cle_pairs import Pair, find_pairs, layer
from edgeq.outliers.stats import batches, run_hooked

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.stats import ObserveHook, OutputHook


@dataclass(frozen=True)
class CLEConfig:
    """Clamp-aware cross-layer equalization of ``conv -> act -> conv/linear`` pairs."""

    calibration_samples: int = 32
    max_scale: float = 32.0  # a channel is raised by at most this factor (bounds the producer's weight growth)
    # A clamped (ReLU6) channel is raised only so far that values up to headroom x its calibration maximum still
    # pass the clamp unchanged: unseen inputs beyond the calibration range stay exact up to that margin.
    headroom: float = 4.0
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # strengths tried for 1x1 conv / Linear consumers
    rows_per_batch: int = 512  # sampled pixels per calibration batch for the strength choice
    min_gain: float = 0.02  # apply only if the simulated consumer error drops by at least this fraction
    version: int = 1

    def __post_init__(self) -> None:
        if self.calibration_samples < 1:
            raise UsageError(f"calibration_samples must be >= 1, got {self.calibration_samples}")
        if self.headroom < 1.0:
            raise UsageError(f"headroom must be >= 1, got {self.headroom}")
        if self.max_scale < 1.0:
            raise UsageError(f"max_scale must be >= 1, got {self.max_scale}")
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise UsageError(f"alphas must be a non-empty tuple of values in [0, 1], got {self.alphas}")

    def to_dict(self) -> JSONObject:
        return asdict(self)


def _sim_int8_error(w: torch.Tensor, x: torch.Tensor) -> float:
    """Squared error of ``x @ w.T`` with per-row symmetric INT8 ``w`` and affine 8-bit per-tensor ``x``."""
    amax = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127.0
    wq = (w / amax).round().clamp(-127, 127) * amax
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = max(hi - lo, 1e-12) / 255.0
    zp = round(-lo / scale)
    xq = ((x / scale).round() + zp).clamp(0, 255).sub(zp) * scale
    return float(((xq @ wq.T) - (x @ w.T)).pow(2).sum())


def equalize(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
             cfg: CLEConfig = CLEConfig()) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Equalize every pair in place (eval mode). Returns (model, per-pair log)."""
    import torch  # heavy: torch, imported only where a model is built or run

    model = model.eval()
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return model, []  # every pair starts at a conv: no trace needed
    first = next(batches(calib, 1))
    try:
        pairs = find_pairs(model, first)
    except Exception as e:  # noqa: BLE001  tracing is best effort: a model it cannot trace is left unchanged
        return model, [{"skipped": f"torch.export failed: {type(e).__name__}: {str(e)[:200]}"}]
    if not pairs:
        return model, []
    modules = dict(model.named_modules())
    pre_max, rows = _calibration_stats(model, calib, pairs, modules, cfg)
    log: list[JSONObject] = []
    with torch.no_grad():
        for p in pairs:
            if p.producer not in pre_max:
                continue  # not reached by the calibration data
            entry = _equalize_pair(p, modules, pre_max[p.producer], rows.get(p.consumer, []), cfg)
            if entry is not None:
                log.append(entry)
    return model, log


def _calibration_stats(model: torch.nn.Module, calib: Mapping[str, np.ndarray], pairs: list[Pair],
                       modules: dict[str, torch.nn.Module],
                       cfg: CLEConfig) -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Per producer: its per-channel output maxima; per (non-depthwise) consumer: sampled input rows."""
    import torch  # heavy: torch, imported only where a model is built or run

    gen = torch.Generator().manual_seed(0)
    pre_max: dict[str, torch.Tensor] = {}
    rows: dict[str, list[torch.Tensor]] = {p.consumer: [] for p in pairs if not p.depthwise}

    def out_hook(key: str) -> OutputHook:
        def hook(_m: torch.nn.Module, _a: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            v = out.detach().float().transpose(0, 1).reshape(out.shape[1], -1).amax(1)
            pre_max[key] = torch.maximum(pre_max[key], v) if key in pre_max else v
        return hook

    def in_hook(key: str) -> ObserveHook:
        def hook(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float()
            flat = x.transpose(0, 1).reshape(x.shape[1], -1).T if x.dim() == 4 else x.reshape(-1, x.shape[-1])
            take = torch.randperm(flat.shape[0], generator=gen)[:cfg.rows_per_batch]
            rows[key].append(flat[take].clone())
        return hook

    handles = [modules[p.bn or p.producer].register_forward_hook(out_hook(p.producer)) for p in pairs]
    handles += [modules[k].register_forward_pre_hook(in_hook(k)) for k in rows]
    run_hooked(model, calib, cfg.calibration_samples, handles)
    return pre_max, rows


def _equalize_pair(p: Pair, modules: dict[str, torch.nn.Module], m: torch.Tensor, rows: list[torch.Tensor],
                   cfg: CLEConfig) -> JSONObject | None:
    """Scale one pair (``m``: the producer's per-channel output maxima, ``rows``: the consumer's sampled inputs)
    by the exponent that minimizes the simulated INT8 error; None when it is left alone."""
    import torch  # heavy: torch, imported only where a model is built or run

    a = m.clamp(min=0.0) if p.clamp is None else m.clamp(min=0.0, max=p.clamp)
    top = float(a.max())
    if top <= 0.0:
        return None
    base = (a / top).clamp(min=1.0 / cfg.max_scale)
    cons = layer(modules, p.consumer)
    if p.depthwise:
        alpha, gain = 1.0, None
    else:
        x = torch.cat(rows)
        w = cons.weight.detach().float().reshape(cons.weight.shape[0], -1)
        if w.shape[1] != x.shape[1]:
            return None  # k x k consumer: columns are not channels; not simulated, left alone
        errs = {al: _sim_int8_error(w * base.pow(al), x / base.pow(al)) for al in cfg.alphas}
        alpha = min(errs, key=lambda k: errs[k])
        gain = 1.0 - errs[alpha] / max(errs.get(0.0, _sim_int8_error(w, x)), 1e-30)
        if alpha == 0.0 or gain < cfg.min_gain:
            return None
    s = base.pow(alpha)
    if p.clamp is not None:
        # exactness on the calibration data: the clamp must not cut a value it did not cut before
        need = (m.clamp(min=0.0) * cfg.headroom / p.clamp).clamp(max=1.0)
        # saturating channels, and channels never active on calibration (no evidence of their range), keep s = 1
        s = torch.where((m > p.clamp) | (m <= 0), torch.ones_like(s), torch.maximum(s, need))
    _scale_producer(modules, p, s)
    _scale_consumer(cons, s, p.depthwise)
    entry: JSONObject = {"producer": p.producer, "consumer": p.consumer, "alpha": alpha,
                         "median_range_ratio_before": round(range_ratio(a), 2),
                         "median_range_ratio_after": round(range_ratio(a / s), 2)}
    if gain is not None:
        entry["simulated_error_drop"] = round(gain, 3)
    return entry


def range_ratio(a: torch.Tensor) -> float:
    """Tensor range over the median channel range: how many times coarser the shared INT8 step is for a typical
    channel than a per-channel scale would be (dead channels, range 0, do not count)."""
    alive = a[a > 0]
    return float(alive.max() / alive.median()) if alive.numel() else 1.0


def _scale_producer(modules: Mapping[str, torch.nn.Module], p: Pair, s: torch.Tensor) -> None:
    """Divide output channel ``i`` of the producer (BN affine if there is one, else conv weight/bias) by s_i."""
    import torch  # heavy: torch, imported only where a model is built or run

    if p.bn is not None:
        bn = modules[p.bn]
        if not isinstance(bn, torch.nn.BatchNorm2d) or bn.weight is None or bn.bias is None:
            raise UsageError(f"BatchNorm {p.bn!r} has no affine parameters to scale",
                             "construct it with affine=True or exclude cross-layer equalization")
        bn.weight.div_(s.to(bn.weight.dtype))
        bn.bias.div_(s.to(bn.bias.dtype))
        return
    conv = layer(modules, p.producer)
    conv.weight.div_(s.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.div_(s.to(conv.bias.dtype))


def _scale_consumer(cons: torch.nn.Conv2d | torch.nn.Linear, s: torch.Tensor, depthwise: bool) -> None:
    w = cons.weight
    if depthwise:
        w.mul_(s.reshape(-1, 1, 1, 1).to(w.dtype))
    elif w.dim() == 4:
        w.mul_(s.reshape(1, -1, 1, 1).to(w.dtype))
    else:
        w.mul_(s.reshape(1, -1).to(w.dtype))
