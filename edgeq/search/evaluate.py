"""Measuring one ONNX search trial: quantize it, run it on the host, score it against the budget and size cap."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.backends.base import get_backend
from edgeq.backends.onnx import OnnxBuildInputs, rename_outputs
from edgeq.config import Budget
from edgeq.data import Dataset
from edgeq.errors import EdgeqError
from edgeq.jsontypes import JSONObject, get_object_or_none
from edgeq.search.trial import Trial
from edgeq.select.evaluation import evaluate_tensor
from edgeq.validate.metrics import Metrics, compare
from edgeq.validate.runners.host import HostRunner

SEARCH_DIR = "search"  # the ONNX search's folder in the export's scratch: its trials and calibrated ranges


def calibration_cache(folder: Path, method: str | None) -> Path:
    """The file of calibrated ranges for METHOD in FOLDER: they depend only on the float graph, the data and the
    method, so every build of one graph shares them (the search's trials, and explain's rebuilds of them)."""
    return folder / f"calibration.{method}.json"


@dataclass(frozen=True)
class EvalData:
    """What every ONNX trial is built from and measured on."""

    prepped: Path  # the pre-processed float graph every trial quantizes
    calib: Dataset
    inputs_npz: Path  # the evaluation inputs (and labels) the host runner feeds
    reference: dict[str, np.ndarray]  # the float model's outputs on those inputs
    labels: np.ndarray | None = None
    float_model: Path | None = None  # the user's float model: size ratios are to it, not to the prepared graph


class Evaluator:
    """Quantizes one trial and measures it on the evaluation set with the host runner."""

    def __init__(self, data: EvalData, budget: Budget, workdir: Path, max_size_ratio: float | None) -> None:
        self.data, self.budget, self.workdir = data, budget, workdir
        self.runner = HostRunner()
        self.max_size_ratio = max_size_ratio
        # Ratios are to the user's float model: the prepared graph (INT8 embedding tables) is already smaller.
        baseline = data.float_model if data.float_model is not None else data.prepped
        self.float_bytes = baseline.stat().st_size
        self.float_latency = self.runner.run(baseline, "onnx", data.inputs_npz, workdir).latency_ms

    def run(self, trial: Trial, seed: tuple[Path, JSONObject | None] | None = None) -> Trial:
        """Quantize and measure TRIAL; ``seed`` = (model, its bias-correction record) already built with exactly
        this trial's settings (the export's first model), measured instead of quantized again."""
        t0 = time.perf_counter()
        trial.path = self.workdir / f"trial{trial.index:02d}.onnx"
        try:
            self._build(trial, trial.path, seed)
            res = self.runner.run(trial.path, "onnx", self.data.inputs_npz, self.workdir)
            trial.metrics = compare(self.data.reference, res.outputs, self.data.labels)
            trial.latency_ms = res.latency_ms
            trial.bytes = trial.path.stat().st_size
            self._score(trial, trial.metrics)
        except EdgeqError as e:  # one broken configuration must not end the search
            trial.error = e.cause
        trial.seconds = time.perf_counter() - t0
        return trial

    def _build(self, trial: Trial, path: Path, seed: tuple[Path, JSONObject | None] | None) -> None:
        if seed is not None:
            shutil.copyfile(seed[0], path)
            rename_outputs(path, list(self.data.reference))
            trial.bias_correction, trial.reused = seed[1], True
            return
        # the recipe the manifest records when this trial ships, through the export's own build path
        inputs = OnnxBuildInputs(calib=self.data.calib, prepped=self.data.prepped,
                                 output_names=tuple(self.data.reference),
                                 calibration_cache=calibration_cache(self.workdir, trial.quant.calibration))
        built = get_backend("onnx").build(inputs, trial.recipe(), path)
        trial.bias_correction = get_object_or_none(built.record, "bias_correction")

    def _score(self, trial: Trial, metrics: Metrics) -> None:
        """The verdict against the budget and the size cap, and the distance to both."""
        ev = evaluate_tensor(metrics, self.budget, trial.bytes / self.float_bytes, self.max_size_ratio)
        trial.failures, trial.passed, trial.shortfall = ev.failures, ev.passed, ev.shortfall
        trial.distance = dict(ev.distance)
