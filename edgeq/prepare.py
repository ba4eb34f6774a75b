"""Outlier-aware PTQ as an export step: prepare the torch module once, before capture, so every format gets it.

:func:`prepare_source` runs :func:`edgeq.outliers.prepare_for_int8` (cross-layer equalization, data-aware weight
rounding and bias correction for convolutions; SmoothQuant per input tensor when the model has LayerNorm/RMSNorm;
INT8 per-row embedding tables — each only where the model has the pattern) on a *copy* of
the source module; the original stays the float reference every artifact is validated against, so the verdict
covers the preparation and quantization together. It then runs a sensitivity pass over the prepared model's
Linear layers (:func:`edgeq.outliers.linear_sim.linear_sensitivity`): each Linear's share of the whole-model INT8 output error, measured
by restoring it alone to float in a simulated all-INT8 model. That ranking orders the search's mixed-precision
moves (keep the most sensitive linears float / 16-bit) in both formats.

The record (``manifest["outliers"]``) says what ran, the per-layer SmoothQuant strengths and the ranking.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from edgeq.config import ROUNDING_MODES, PipelineConfig
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject, JSONValue, get_objects, number_or_none, objects
from edgeq.outliers import AdaRoundConfig, OutlierConfig, WeightRoundingConfig, prepare_for_int8
from edgeq.outliers.int8_sim import simulated_int8_error
from edgeq.outliers.linear_sim import has_norm_layers, linear_dominated, linear_sensitivity, predict_scheme
from edgeq.progress import Progress
from edgeq.source import ModelSource, state_hash

if TYPE_CHECKING:
    import torch


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
                   explicit: bool = False, rounding: str = "gptq") -> tuple[ModelSource, JSONObject]:
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
    log: JSONObject = {}
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
    record: JSONObject = {
        "applied": [k for k, v in log.items() if k != "rounding" and _changed(k, v)],
        "config": cfg.to_dict(),
        "smoothquant": [{k: e[k] for k in ("layers", "alpha", "outlier_ratio", "error_before", "error_after",
                                           "skipped") if k in e}
                        for e in get_objects(log, "smoothquant")],
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


def conv_prepare(module: torch.nn.Module, data: Mapping[str, np.ndarray], rounding: str, progress: Progress,
                 log: JSONObject) -> tuple[torch.nn.Module, OutlierConfig]:
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
    picks: dict[str, tuple[torch.nn.Module, OutlierConfig, JSONObject]] = {}
    errors: dict[str, float] = {}
    for mode in ("gptq", "adaround"):
        cfg, sub = conv_outlier_config(mode, fit), JSONObject()
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


def _changed(method: str, entries: JSONValue) -> bool:
    if method == "smoothquant":
        return any((number_or_none(e.get("alpha")) or 0.0) > 0 for e in objects(entries, method))
    return bool(entries)
