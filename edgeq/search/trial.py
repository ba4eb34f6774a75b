"""One search trial: its configuration (a rung of the ladder), its measured outcome, and the search's result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeq.compress.spec import MethodConfig
from edgeq.config import Budget, CalibrationMethod, QuantOptions, SearchOptions
from edgeq.jsontypes import JSONObject
from edgeq.recipe import Recipe
from edgeq.select.rule import Scored, closest, shortfall
from edgeq.validate.metrics import Metrics

__all__ = ["SearchResult", "Trial", "TrialConfig", "shortfall", "trial_line"]


@dataclass(frozen=True)
class TrialConfig:
    calibration: CalibrationMethod
    per_channel: bool
    exclude: tuple[str, ...] = ()  # pattern categories kept in float
    float_top_k: int = 0  # most sensitive nodes kept in float
    int16_top_k: int = 0  # most sensitive nodes' outputs at 16-bit activations
    dynamic: bool = False  # ORT dynamic INT8 MatMuls (activation scales per run), attention MatMuls float
    fp16_linears: int = 0  # most sensitive torch Linears (edgeq.prepare ranking) kept float, fp16 weights
    hybrid: bool = False  # static QDQ convolutions, ORT dynamic INT8 linear layers (edgeq.onnx.hybrid)
    per_token: bool = False  # dynamic INT8 with one activation scale per token (edgeq.onnx.per_token)

    def label(self) -> str:
        if self.dynamic:
            parts = ["dynamic INT8 MatMul" + (", per-token activations" if self.per_token else ""),
                     "per-channel" if self.per_channel else "per-tensor"]
            if self.fp16_linears:
                parts.append(f"top-{self.fp16_linears} sensitive linears float (fp16 weights)")
            return ", ".join(parts)
        parts = [self.calibration, "per-channel" if self.per_channel else "per-tensor"]
        if self.hybrid:
            parts.append("dynamic INT8 linears")
        if self.exclude:
            parts.append("float:" + "+".join(self.exclude))
        if self.float_top_k:
            parts.append(f"float top-{self.float_top_k}")
        if self.int16_top_k:
            parts.append(f"int16 top-{self.int16_top_k}")
        return ", ".join(parts)


@dataclass
class Trial:
    index: int
    stage: str
    config: TrialConfig
    quant: QuantOptions
    path: Path | None = None
    bytes: int = 0
    latency_ms: float | None = None
    metrics: Metrics | None = None
    failures: tuple[str, ...] = ()
    passed: bool = False
    shortfall: float = math.inf
    seconds: float = 0.0
    error: str | None = None
    fp16_nodes: tuple[str, ...] = ()  # kept-float linears' MatMul/Gemm nodes, weights stored as float16
    fp16_modules: tuple[str, ...] = ()  # the torch modules they come from
    distance: dict[str, float] = field(default_factory=dict)  # per budget limit, negative = missed (+ size_ratio)
    bias_correction: JSONObject | None = None  # edgeq.onnx.bias_correct's record (static 8-bit trials)
    reused: bool = False  # the export's first model, measured as this trial instead of quantized again

    def recipe(self) -> Recipe:
        """What this trial's model is built from (the ONNX backend's ``build``): its options, with the kept linears'
        weights in float16."""
        return Recipe.from_quant_options(self.quant).with_float16(self.fp16_nodes)

    def scored(self) -> Scored:
        return Scored(self.index, self.bytes if self.metrics is not None else None, self.passed, self.shortfall,
                      errored=self.metrics is None, latency_ms=self.latency_ms)

    def to_dict(self, compression: tuple[MethodConfig, ...] = ()) -> JSONObject:
        """The trial's record; COMPRESSION: the --compress steps the model went through before capture, part of
        the recipe it was built from."""
        return {
            "index": self.index, "stage": self.stage, "label": self.config.label(), "config": asdict(self.config),
            "mode": "dynamic" if self.config.dynamic else "static",
            "fp16_linears": list(self.fp16_modules), "fp16_nodes": list(self.fp16_nodes),
            "nodes_excluded": list(self.quant.nodes_to_exclude),
            "int16_activation_nodes": list(self.quant.int16_activation_nodes),
            # what it was built from: explain rebuilds it for its per-layer error
            "recipe": replace(self.recipe(), compression=compression).to_dict(),
            "bytes": self.bytes, "latency_ms": self.latency_ms,
            "metrics": self.metrics.to_dict() if self.metrics else None, "passed": self.passed,
            "failures": list(self.failures), "shortfall": None if math.isinf(self.shortfall) else self.shortfall,
            "distance": self.distance,
            "bias_correction_convs": (self.bias_correction or {}).get("convs", 0),
            "reused_first_model": self.reused,
            "seconds": round(self.seconds, 3), "error": self.error,
        }


@dataclass
class SearchResult:
    met: bool
    best: Trial | None
    trials: list[Trial]
    float_bytes: int
    float_latency_ms: float | None
    seconds: float
    stopped: str  # why the search ended
    sensitivity: list[JSONObject] = field(default_factory=list)
    patterns: dict[str, list[str]] = field(default_factory=dict)

    time_capped: bool = False  # the wall-clock safety cap, not the trial budget, ended the search

    def closest(self, n: int = 3) -> list[Trial]:
        by_index = {t.index: t for t in self.trials}
        return [by_index[r.order] for r in closest([t.scored() for t in self.trials], n)]

    def to_dict(self, budget: Budget, options: SearchOptions, compression: tuple[MethodConfig, ...] = ()) -> JSONObject:
        return {
            "met": self.met, "best": self.best.index if self.best else None, "stopped": self.stopped,
            "time_capped": self.time_capped,
            "seconds": round(self.seconds, 2), "budget": budget.to_dict(), "options": options.to_dict(),
            "float": {"bytes": self.float_bytes, "latency_ms": self.float_latency_ms},
            "trials": [t.to_dict(compression) for t in self.trials],
            "closest": [t.index for t in self.closest()],
            "patterns": self.patterns,
        }


def trial_line(t: Trial, float_bytes: int) -> str:
    if t.metrics is None:
        return f"error: {t.error}"
    m = t.metrics
    lat = f"{t.latency_ms:.3f} ms" if t.latency_ms is not None else "–"
    verdict = "meets the budget" if t.passed else "; ".join(t.failures)
    return (f"cos {m.cosine_mean:.5f}, SQNR {m.sqnr_db:.1f} dB, {t.bytes / float_bytes:.3f}× float, {lat}: "
            f"{verdict}")
