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

from edgeq.config import ROUNDING_MODES, PipelineConfig
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.outliers import AdaRoundConfig, OutlierConfig, WeightRoundingConfig, prepare_for_int8
from edgeq.outliers.int8_sim import simulated_int8_error
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
                   explicit: bool = False, rounding: str = "gptq") -> tuple[ModelSource, dict[str, Any]]:
    """A new source holding the prepared module (``source`` is untouched) and the manifest record.

    ``rounding`` (conv nets only; a model with LayerNorm/RMSNorm keeps GPTQ rounding under SmoothQuant):
    ``gptq`` (act-order GPTQ), ``adaround`` (learned rounding with the INT8 activations in the objective,
    :mod:`edgeq.outliers.adaround`), ``nearest`` (no data-aware rounding), ``auto`` (:func:`pick_rounding`)."""
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
    # Without SmoothQuant nothing rescales a Linear after its weights are rounded, so a conv net's Linears (the
    # classifier) are rounded data-aware too, and every layer's columns in GPTQ's act-order. Weight-only INT8 top-1
    # agreement with float on 400 held-out crops (``python -m bench.real_weights_only``): EfficientNet-Lite1 0.935
    # (convs rounded) -> 0.965, Lite0 0.955 -> 0.950.
    if rounding not in ROUNDING_MODES:
        raise UsageError(f"unknown rounding {rounding!r}", f"use one of {', '.join(ROUNDING_MODES)}")
    if has_norm_layers(source.module):
        cfg = OutlierConfig()
        module = prepare_for_int8(copy.deepcopy(source.module), data, cfg, log=log)
    else:
        module, cfg = conv_prepare(source.module, data, rounding, progress, log)
    prep_s = time.perf_counter() - t0
    progress.stage("sensitivity pass: each Linear's share of the simulated INT8 error")
    t1 = time.perf_counter()
    ranking = linear_sensitivity(module, data)
    record: dict[str, Any] = {
        "applied": [k for k, v in log.items() if k != "rounding" and _changed(k, v)],
        "config": cfg.to_dict(),
        "smoothquant": [{k: e[k] for k in ("layers", "alpha", "outlier_ratio", "error_before", "error_after",
                                           "skipped") if k in e}
                        for e in log.get("smoothquant", [])],
        "embeddings": log.get("embeddings", []),
        "bias_correction": log.get("bias_correction", []),
        "cle": log.get("cle", []),
        "weight_rounding": log.get("weight_rounding", []),
        "adaround": log.get("adaround", []),
        "rounding": log.get("rounding", {}),
        "linear_sensitivity": [s.to_dict() for s in ranking],
        "linear_dominated": linear_dominated(module),
        "scheme_prediction": predict_scheme(module, data).to_dict(),
        "prepared_sha256": state_hash(module),
        "seconds": {"prepare": round(prep_s, 2), "sensitivity": round(time.perf_counter() - t1, 2)},
    }
    return dataclasses.replace(source, module=module.eval()), record


def conv_outlier_config(rounding: str, samples: int) -> OutlierConfig:
    """The CNN preparation (no SmoothQuant: no norm-fed Linears) with the chosen weight rounding."""
    if rounding == "adaround":
        return OutlierConfig(smoothquant=None, weight_rounding=None,
                             adaround=AdaRoundConfig(calibration_samples=min(samples, ADAROUND_SAMPLES)))
    if rounding == "nearest":
        return OutlierConfig(smoothquant=None, weight_rounding=None)
    return OutlierConfig(smoothquant=None, weight_rounding=WeightRoundingConfig(linear=True, act_order=True))


# Calibration rows learned rounding uses (AdaRound's paper: 1024; 200 keep a 3-5M-parameter CNN near 5 minutes).
ADAROUND_SAMPLES = 200


def conv_prepare(module: Any, data: Mapping[str, np.ndarray], rounding: str, progress: Progress,
                 log: dict[str, Any]) -> tuple[Any, OutlierConfig]:
    """Prepare a copy of a conv net with ``rounding``; ``auto`` builds the GPTQ and the AdaRound preparations and
    keeps the one whose simulated INT8 output error (every conv/linear input fake-quantized, weights on their
    grid, :func:`edgeq.outliers.int8_sim.simulated_int8_error`) is lower on the last quarter of the calibration
    rows, which neither preparation fitted on: learned rounding can fit its rows (EfficientNet-Lite0, 200 crops:
    ONNX top-1 agreement 0.74 on held-out crops vs GPTQ's 0.93, docs/explanation/cnn-rounding.md)."""
    samples = int(next(iter(data.values())).shape[0])
    if rounding != "auto":
        cfg = conv_outlier_config(rounding, samples)
        return prepare_for_int8(copy.deepcopy(module), data, cfg, log=log, progress=progress), cfg
    fit = max(1, samples * 3 // 4) if samples > 1 else samples
    fit_rows = {k: v[:fit] for k, v in data.items()}
    check_rows = {k: v[fit:] for k, v in data.items()} if fit < samples else dict(data)
    picks: dict[str, tuple[Any, OutlierConfig, dict[str, Any]]] = {}
    errors: dict[str, float] = {}
    for mode in ("gptq", "adaround"):
        cfg, sub = conv_outlier_config(mode, fit), dict[str, Any]()
        progress.stage(f"conv rounding candidate: {mode}")
        m = prepare_for_int8(copy.deepcopy(module), fit_rows, cfg, log=sub, progress=progress)
        picks[mode] = (m, cfg, sub)
        errors[mode] = simulated_int8_error(m, module, check_rows)
    best = min(errors, key=lambda k: (errors[k], k != "gptq"))  # a tie keeps GPTQ (the cheaper, earlier default)
    m, cfg, sub = picks[best]
    log.update(sub)
    log["rounding"] = {"mode": "auto", "picked": best, "fit_rows": fit, "check_rows": samples - fit,
                       "simulated_int8_error": {k: float(f"{v:.4g}") for k, v in errors.items()}}
    return m, cfg


@dataclass(frozen=True)
class SchemePrediction:
    """Simulated output error (relative, squared) of the whole model per activation scheme, and the pick per format.

    ``pick`` maps a format to the scheme its search tries first: ``"dynamic"`` unless static per-tensor
    activations are predicted to be clearly better than that format's dynamic ones (:data:`STATIC_FLATTERY`) (ONNX Runtime's dynamic MatMul: one scale per run;
    XNNPACK's dynamic linear: one scale per token), else ``"static"`` (the target's scheme, unchanged).
    """

    errors: Mapping[str, float]
    pick: Mapping[str, str]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"errors": {k: float(f"{v:.4g}") for k, v in self.errors.items()}, "pick": dict(self.pick),
                "reason": self.reason}


# The simulation leaves out a static model's other INT8 tensors (residual adds, softmax, norm inputs), so it
# flatters static: dynamic goes first unless static is simulated to be clearly better — dynamic's error more than
# this factor above static's. Near ties (a model without outliers, errors near float noise) go to dynamic, which
# needs no calibration and is the cheaper model to build and lower.
STATIC_FLATTERY = 2.0
SCHEME_FOR_FORMAT = {"onnx": "dynamic_per_tensor", "pte": "dynamic_per_token"}


# Rows the scheme prediction runs (three forwards in all): more than the per-Linear ranking, because the three
# errors can be close and 8 rows decided the tiny test encoder's ONNX pick differently by seed.
PREDICTION_SAMPLES = 32


def predict_scheme(model: Any, calib: Mapping[str, np.ndarray], samples: int = PREDICTION_SAMPLES) -> SchemePrediction:
    """Which activation scheme to try first, from a cheap simulation in torch on the calibration rows.

    Convolution nets (conv-dominated, or with convolutions and no LayerNorm/RMSNorm) are not simulated: their
    activations have no per-token outliers and static INT8 (the target's scheme) is what their kernels are fastest
    with, so it stays first. For linear-dominated models (transformers, MLPs),
    every Linear input is fake-quantized to symmetric INT8 (weights per output channel) three ways — ``static``:
    one scale per tensor from the calibration rows (what a calibrated QDQ model fixes); ``dynamic_per_tensor``:
    one scale per sample (ORT's per-run scale, the host runs one sample at a time); ``dynamic_per_token``: one
    scale per row (XNNPACK's qd8 linears) — and the whole-model output error is measured for each.
    """
    import torch

    from edgeq.outliers.smoothquant import fake_int8
    from edgeq.outliers.stats import batches

    has_conv = any(isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d) for m in model.modules())
    if not linear_dominated(model) or (has_conv and not has_norm_layers(model)):
        # a CNN whose classifier head outweighs its convolutions (the digits CNN) is still a CNN: no LayerNorm /
        # RMSNorm, no per-token outliers, and the static convolutions are what its kernels are fast with
        return SchemePrediction({}, {f: "static" for f in SCHEME_FOR_FORMAT},
                                "convolution net: static INT8 (the target's scheme) first, not simulated")

    def per_sample(x: Any) -> Any:
        return torch.stack([fake_int8(r, "per_tensor") for r in x]) if x.dim() > 1 else fake_int8(x, "per_tensor")

    quantizers = {"static": lambda x: fake_int8(x, "per_tensor"), "dynamic_per_tensor": per_sample,
                  "dynamic_per_token": lambda x: fake_int8(x, "per_token")}
    # static QDQ also quantizes each Linear's output (one calibrated scale: attention's q/k/v, the FFN's hidden
    # layer); dynamic schemes keep MatMul outputs float
    quant_out = {"static": True, "dynamic_per_tensor": False, "dynamic_per_token": False}
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    qweights = {id(m): fake_int8(m.weight.detach().float(), "per_channel").to(m.weight.dtype) for m in lins}
    args = next(batches(calib, samples, batch=samples))
    errors: dict[str, float] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = _first(model(*args)).float()
        for name, quant in quantizers.items():
            def fwd(mod: Any, inp: tuple[Any, ...], out: Any, quant: Any = quant, q_out: bool = quant_out[name]) -> Any:
                y = torch.nn.functional.linear(quant(inp[0]), qweights[id(mod)], mod.bias)
                return quant(y) if q_out else y

            handles = [m.register_forward_hook(fwd) for m in lins]
            try:
                q = _first(model(*args)).float()
            finally:
                for h in handles:
                    h.remove()
            errors[name] = float(((q - ref) ** 2).sum() / (ref**2).sum().clamp(min=1e-20))
    model.train(was_training)
    pick = {f: "dynamic" if errors[s] < STATIC_FLATTERY * errors["static"] else "static"
            for f, s in SCHEME_FOR_FORMAT.items()}
    reason = ("linear-dominated: simulated output error static {static:.3g}, dynamic per-tensor "
              "{dynamic_per_tensor:.3g}, dynamic per-token {dynamic_per_token:.3g}").format(**errors)
    return SchemePrediction(errors, pick, reason)


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
