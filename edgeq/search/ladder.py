"""The search's ladders: stages of trial configurations, least protected first.

Linear-dominated graphs (transformers, MLPs) climb dynamic INT8 and mixed precision first; every graph then climbs
the static ladder (calibration methods, per-channel, fragile patterns float, 16-bit / float on the most sensitive
nodes). Later stages build on the best trial so far, so the static ladder is generated lazily.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from edgeq.config import QuantOptions, SearchOptions
from edgeq.data import Dataset
from edgeq.onnx.hybrid import has_convs_and_linears
from edgeq.search.patterns import CATEGORIES
from edgeq.search.sensitivity import onnx_sensitivity
from edgeq.search.trial import Trial, TrialConfig


def linear_dominated(path: Path) -> bool:
    """True when MatMul/Gemm weights outnumber convolution weights (a transformer, an MLP): the outliers then
    sit in the linears' activations, and per-run (dynamic) activation scales plus kept-float linears are the
    moves with the largest expected gain."""
    model = onnx.load(str(path), load_external_data=False)
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    lin = sum(sizes.get(i, 0) for n in model.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input[1:2])
    conv = sum(sizes.get(i, 0) for n in model.graph.node if n.op_type == "Conv" for i in n.input[1:2])
    return bool(lin > 0 and lin >= conv)


def linear_ladder(base: QuantOptions, linears: list[str],
                   baseline: bool = True) -> Iterator[tuple[str, list[TrialConfig]]]:
    """Linear-dominated models, after the baseline (unless predicted hopeless: ``baseline=False``): dynamic INT8
    MatMuls, then mixed precision on top of it (the k most sensitive linears float with fp16 weights,
    cumulatively; the size cap bounds k)."""
    start = TrialConfig(base.calibration or "minmax", True, dynamic=True)
    if baseline:
        yield "baseline", [TrialConfig(base.calibration or "minmax", bool(base.per_channel))]
    yield "dynamic", [start]
    ks = [k for k in (1, 2, 3, 4, 6, 8) if k <= len(linears)]
    yield "mixed-precision", [replace(start, fp16_linears=k) for k in ks]


def chain(*ladders: Iterator[tuple[str, list[TrialConfig]]]) -> Iterator[tuple[str, list[TrialConfig]]]:
    for ladder in ladders:
        yield from ladder


def static_ladder(base: QuantOptions, patterns: dict[str, list[str]], state: dict[str, Any],
                  best: Callable[[], Trial | None], prepped: Path, calib: Dataset,
                  options: SearchOptions) -> Iterator[tuple[str, list[TrialConfig]]]:
    """Stages of candidate configs; later stages build on the best trial so far (generated lazily)."""
    start = TrialConfig(base.calibration or "minmax", bool(base.per_channel))
    yield "baseline", [start]
    methods = [m for m in options.calibrations if m != start.calibration]
    yield "calibration", [replace(start, calibration=m) for m in methods]
    b = best()
    anchor = b.config if b else start
    if not anchor.per_channel:
        # per-tensor -> per-channel only: per-tensor weights are never the more accurate choice (one scale for
        # channels whose ranges differ by orders of magnitude — EfficientNet-Lite1's depthwise convs: 0.68 top-1
        # agreement vs 0.91), so from a per-channel anchor the flip would only spend a trial
        yield "calibration", [replace(anchor, per_channel=True)]
    b = best()
    anchor = b.config if b else start
    if has_convs_and_linears(prepped):
        # the same size as the static model, so before any pattern / node is kept float; later stages build on it
        # when it is the best trial (their 16-bit / float moves then apply to its static part)
        yield "hybrid", [replace(anchor, hybrid=True)]
        b = best()
        anchor = b.config if b else start
    present = [c for c in CATEGORIES if patterns.get(c)]
    cumulative: list[TrialConfig] = []
    for i in range(len(present)):
        cumulative.append(replace(anchor, exclude=tuple(present[: i + 1])))
    yield "patterns", cumulative
    b = best()
    if b is None or b.path is None:
        return
    state["ranking"] = safe_sensitivity(prepped, b.path, calib, options)
    if not state["ranking"]:
        return
    anchor = b.config
    ks = [k for k in (2, 4, 8, 16, 32) if k <= len(state["ranking"])]
    yield "sensitivity", [c for k in ks for c in (replace(anchor, int16_top_k=k), replace(anchor, float_top_k=k))]


def safe_sensitivity(prepped: Path, qdq: Path, calib: Dataset, options: SearchOptions) -> list[Any]:
    try:
        return onnx_sensitivity(prepped, qdq, calib, max_samples=options.sensitivity_samples)
    except Exception as e:  # noqa: BLE001  the debugger is best-effort: without it the ladder skips its stage
        logging.getLogger(__name__).warning("ONNX sensitivity analysis failed (%s: %s); the search skips its "
                                            "sensitivity stage", type(e).__name__, str(e)[:300])
        return []
