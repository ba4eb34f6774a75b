"""Outlier-aware PTQ as an export step: prepare the torch module once, before capture, so every format gets it.

:func:`prepare_source` runs :func:`edgeq.outliers.prepare_for_int8` (cross-layer equalization, data-aware weight
rounding and bias correction for convolutions; SmoothQuant per input tensor when the model has LayerNorm/RMSNorm;
INT8 per-row embedding tables — each only where the model has the pattern) on a *copy* of
the source module; the original stays the float reference every artifact is validated against, so the verdict
covers the preparation and quantization together. It then runs a sensitivity pass over the prepared model's
Linear layers (:func:`linear_sensitivity`): each Linear's share of the whole-model INT8 output error, measured
by restoring it alone to float in a simulated all-INT8 model. That ranking orders the search's mixed-precision
moves (keep the most sensitive linears float / 16-bit) in both formats.

The record (``manifest["outliers"]``) says what ran, the per-layer SmoothQuant strengths and the ranking.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeq.config import PipelineConfig
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.progress import Progress
from edgeq.source import ModelSource, state_hash

# Rows of the calibration set the sensitivity pass runs (one forward per Linear): enough to rank, cheap on 2 cores.
SENSITIVITY_SAMPLES = 8


@dataclass(frozen=True)
class LinearSensitivity:
    """One Linear's share of the simulated all-INT8 output error (``share`` = error removed by keeping it float)."""

    module: str
    share: float
    params: int

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "share": round(self.share, 5), "params": self.params}


def should_prepare(config: PipelineConfig, source: ModelSource) -> bool:
    """``on``: every PyTorch module. ``auto``: a PyTorch module whose export was given an explicit budget (flags,
    ``--max-size-ratio``) and may search — the preparation is what lets a real transformer or a depthwise CNN meet
    one. The target's default budget alone does not trigger it: plain exports stay plain (and fast)."""
    if config.outliers == "off" or source.kind != "factory" or source.module is None:
        return False
    if config.outliers == "on":
        return True
    explicit = not config.budget.is_empty() or config.search.max_size_ratio is not None
    return config.search.mode != "off" and explicit


def input_names(source: ModelSource) -> list[str]:
    return [s.name for s in source.declared_signature] if source.declared_signature else list(source.input_names)


def prepare_source(source: ModelSource, calib: Dataset, progress: Progress,
                   explicit: bool = False) -> tuple[ModelSource, dict[str, Any]]:
    """A new source holding the prepared module (``source`` is untouched) and the manifest record."""
    from edgeq.outliers import OutlierConfig, prepare_for_int8

    if source.module is None:
        if explicit:
            raise UsageError(f"--outliers on needs a PyTorch model, got a {source.kind} source ({source.ref})",
                             "pass pkg.module:factory, or use --outliers auto/off for ONNX inputs")
        return source, {}
    names = input_names(source)
    data = {n: calib.inputs[n] for n in names}
    progress.stage("outlier-aware PTQ in torch (CLE, weight rounding, bias correction, SmoothQuant, INT8 embeddings)")
    t0 = time.perf_counter()
    log: dict[str, Any] = {}
    # SmoothQuant is for the norm-fed Linears of transformers; on a net without LayerNorm/RMSNorm (a CNN's
    # classifier) its explicit ``x * 1/s`` is one more per-tensor INT8 tensor: EfficientNet-Lite0 ONNX top-1
    # agreement 92 % without it, 90 % with it (README, "Quantization on real pretrained models").
    cfg = OutlierConfig() if has_norm_layers(source.module) else OutlierConfig(smoothquant=None)
    module = prepare_for_int8(copy.deepcopy(source.module), data, cfg, log=log)
    prep_s = time.perf_counter() - t0
    progress.stage("sensitivity pass: each Linear's share of the simulated INT8 error")
    t1 = time.perf_counter()
    ranking = linear_sensitivity(module, data)
    record: dict[str, Any] = {
        "applied": [k for k, v in log.items() if _changed(k, v)],
        "config": cfg.to_dict(),
        "smoothquant": [{k: e[k] for k in ("layers", "alpha", "outlier_ratio", "error_before", "error_after",
                                           "skipped") if k in e}
                        for e in log.get("smoothquant", [])],
        "embeddings": log.get("embeddings", []),
        "bias_correction": log.get("bias_correction", []),
        "cle": log.get("cle", []),
        "weight_rounding": log.get("weight_rounding", []),
        "linear_sensitivity": [s.to_dict() for s in ranking],
        "linear_dominated": linear_dominated(module),
        "prepared_sha256": state_hash(module),
        "seconds": {"prepare": round(prep_s, 2), "sensitivity": round(time.perf_counter() - t1, 2)},
    }
    return dataclasses.replace(source, module=module.eval()), record


def has_norm_layers(model: Any) -> bool:
    """A LayerNorm / RMSNorm anywhere (by class, so transformers' own RMSNorm classes count too)."""
    import torch

    return any(isinstance(m, torch.nn.LayerNorm) or "rmsnorm" in type(m).__name__.lower() for m in model.modules())


def linear_dominated(model: Any) -> bool:
    """Linear weights outnumber convolution weights (transformers, MLPs; not a CNN with a classifier head):
    the search's linear moves (dynamic per-token linears, sensitive linears kept float) are then the ones with
    the largest expected gain."""
    import torch

    lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d
                                                                            | torch.nn.Conv3d))
    return bool(lin > 0 and lin >= conv)


def _changed(method: str, entries: Any) -> bool:
    if method == "smoothquant":
        return any(e.get("alpha", 0.0) > 0 for e in entries)
    return bool(entries)


def linear_sensitivity(model: Any, calib: Mapping[str, np.ndarray], samples: int = SENSITIVITY_SAMPLES,
                       granularity: str = "per_tensor") -> list[LinearSensitivity]:
    """Linears ranked by how much of the simulated all-INT8 output error keeping each one float removes.

    Simulation: every Linear's input fake-quantized to symmetric INT8 (``per_tensor``: ORT's dynamic MatMul and
    static QDQ; ``per_token``: XNNPACK's dynamic linear), its weight per output channel. One forward with all
    quantized, then one per Linear with that Linear float. Linears the calibration data never reaches are left
    out (nothing measured).
    """
    import torch

    from edgeq.outliers.smoothquant import fake_int8
    from edgeq.outliers.stats import batches

    lins = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if not lins:
        return []
    args = next(batches(calib, samples, batch=samples))
    keep_float: set[str] = set()
    reached: set[str] = set()
    qweights = {n: fake_int8(m.weight.detach().float(), "per_channel").to(m.weight.dtype) for n, m in lins.items()}

    def hook(name: str) -> Any:
        def fwd(mod: Any, inp: tuple[Any, ...], out: Any) -> Any:
            reached.add(name)
            if name in keep_float:
                return out
            return torch.nn.functional.linear(fake_int8(inp[0], granularity), qweights[name], mod.bias)
        return fwd

    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = _first(model(*args)).float()
        handles = [m.register_forward_hook(hook(n)) for n, m in lins.items()]
        try:
            def err() -> float:
                q = _first(model(*args)).float()
                return float(((q - ref) ** 2).sum() / (ref**2).sum().clamp(min=1e-20))

            base = err()
            out = []
            for n in [n for n in lins if n in reached]:
                keep_float.clear()
                keep_float.add(n)
                gain = (base - err()) / base if base > 0 else 0.0
                out.append(LinearSensitivity(n, gain, int(lins[n].weight.numel())))
        finally:
            for h in handles:
                h.remove()
    model.train(was_training)
    return sorted(out, key=lambda s: -s.share)


def _first(out: Any) -> Any:
    while isinstance(out, tuple | list):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out
