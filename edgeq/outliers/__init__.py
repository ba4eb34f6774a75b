"""Outlier-aware post-training quantization, applied once in torch before capture so every format gets it.

Each method is a pure ``model -> model`` function with a frozen config (the pipeline wraps them as Transform
stages): :func:`equalize` (clamp-aware cross-layer equalization of ``conv -> ReLU/ReLU6 -> conv`` pairs),
:func:`round_weights` (GPTQ-style data-aware rounding of conv weights onto the
per-channel INT8 grid both exporters use) or :func:`adaround` (learned rounding on the same grid, with the INT8
activations in the objective), :func:`smooth_quant` (activation outliers -> weights, per input tensor), :func:`correct_bias`
(the mean shift of INT8 weight rounding, for convolution nets), :func:`quantize_embeddings` (INT8 tables).
:func:`prepare_for_int8` applies what fits the model and returns a log for the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgeq.jsontypes import JSONObject
from edgeq.outliers.adaround import AdaRoundConfig, adaround
from edgeq.outliers.bias_correction import BiasCorrectionConfig, correct_bias
from edgeq.outliers.cle import CLEConfig, equalize
from edgeq.outliers.embedding import EmbeddingQuantConfig, quantize_embeddings
from edgeq.outliers.smoothquant import SmoothQuantConfig, smooth_quant
from edgeq.outliers.weight_rounding import WeightRoundingConfig, round_weights
from edgeq.progress import Progress

if TYPE_CHECKING:
    import torch

__all__ = ["AdaRoundConfig", "BiasCorrectionConfig", "CLEConfig", "EmbeddingQuantConfig", "OutlierConfig", "SmoothQuantConfig",
           "WeightRoundingConfig", "adaround", "correct_bias", "equalize", "prepare_for_int8", "quantize_embeddings",
           "round_weights", "smooth_quant"]


@dataclass(frozen=True)
class OutlierConfig:
    """Which outlier-aware methods :func:`prepare_for_int8` may apply (each only where the model has the pattern)."""

    cle: CLEConfig | None = field(default_factory=CLEConfig)
    weight_rounding: WeightRoundingConfig | None = field(default_factory=WeightRoundingConfig)
    smoothquant: SmoothQuantConfig | None = field(default_factory=SmoothQuantConfig)
    bias_correction: BiasCorrectionConfig | None = field(default_factory=BiasCorrectionConfig)
    embeddings: EmbeddingQuantConfig | None = field(default_factory=EmbeddingQuantConfig)
    # learned rounding (edgeq.outliers.adaround): when set, it replaces weight_rounding (GPTQ)
    adaround: AdaRoundConfig | None = None
    version: int = 3  # 2: cross-layer equalization (cle) and conv weight rounding added; 3: adaround

    def to_dict(self) -> JSONObject:
        return asdict(self)


def prepare_for_int8(model: torch.nn.Module, calib: Mapping[str, np.ndarray], cfg: OutlierConfig = OutlierConfig(),
                     log: JSONObject | None = None, progress: Progress | None = None) -> torch.nn.Module:
    """Apply the configured methods to ``model`` (in place, eval mode) and return it.

    ``calib``: forward-argument name -> calibration array (sample axis first). ``log`` (optional) receives one
    key per method that ran, with what it changed.
    """
    model = model.eval()
    record: JSONObject = {} if log is None else log
    if cfg.cle is not None:  # first: bias correction must see the weights that will be rounded
        model, record["cle"] = equalize(model, calib, cfg.cle)
    if cfg.adaround is not None:  # learned rounding, in place of GPTQ (same grid, same place in the order)
        model, record["adaround"] = adaround(model, calib, cfg.adaround, progress)
    elif cfg.weight_rounding is not None:  # after CLE (it rescales weights), before bias correction (which then
        # finds the conv weights already on the INT8 grid: no rounding shift left to correct)
        model, record["weight_rounding"] = round_weights(model, calib, cfg.weight_rounding)
    if cfg.bias_correction is not None:
        model, record["bias_correction"] = correct_bias(model, calib, cfg.bias_correction)
    if cfg.smoothquant is not None:
        model, record["smoothquant"] = smooth_quant(model, calib, cfg.smoothquant)
    if cfg.embeddings is not None:
        model, record["embeddings"] = quantize_embeddings(model, cfg.embeddings)
    return model
