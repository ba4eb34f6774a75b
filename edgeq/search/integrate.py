"""Hook the search into ``edgeq export``: decide whether to search, swap in the winner, re-validate it.

When it runs (the first INT8 model of each format: static, or dynamic when the preparation predicted dynamic
wins — :func:`edgeq.outliers.linear_sim.predict_scheme`; a user's ``--dynamic`` export is not searched):
- ``SearchOptions.mode == "always"`` (``--search``): whenever a budget exists (flags or the target's defaults);
- ``"auto"`` (default): when a budget flag was given explicitly and the first INT8 model misses it on
  the host;
- ``"off"`` (``--no-search``): never.

The winner replaces the first INT8 model; its quantization record names the trial, and it is validated again
on every runner (host, emulator, ssh) so the verdict comes from the chosen model. The manifest gains the
optional top-level keys ``search`` (options, every trial, the pick, the closest misses) and ``sensitivity``
(the baseline model's per-node ranking).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edgeq.backends.onnx import INT8_DYNAMIC_NAME as ONNX_INT8_DYNAMIC_NAME
from edgeq.backends.onnx import INT8_NAME, graph_stats
from edgeq.config import (
    CALIBRATION_METHODS,
    INT_TYPES,
    Budget,
    CalibrationMethod,
    IntType,
    PipelineConfig,
    QuantOptions,
)
from edgeq.data import Dataset
from edgeq.errors import ManifestError, UsageError
from edgeq.jsontypes import JSONObject, get_object_or_none, get_str_or_none, get_strs
from edgeq.manifest import Artifact
from edgeq.onnx.per_token import PER_TOKEN_TOOL
from edgeq.progress import Progress
from edgeq.recipe import Recipe
from edgeq.search.evaluate import SEARCH_DIR, EvalData
from edgeq.search.search import LadderStart, search_onnx
from edgeq.search.trial import SearchResult, Trial
from edgeq.select.summary import Selection
from edgeq.targetspec import Target
from edgeq.validate.metrics import distance_line
from edgeq.validate.orchestrate import ValidationRequest, load_npz, validate_artifacts

if TYPE_CHECKING:
    pass

ONNX_STATIC = "onnx-int8-static"
ONNX_DYNAMIC = "onnx-int8-dynamic"


@dataclass(frozen=True)
class SearchContext:
    """What an export's search reads besides the artifacts: the run's settings, data, and where it writes."""

    config: PipelineConfig
    budget: Budget
    workdir: Path  # the export's output folder
    calib: Dataset
    target: Target
    progress: Progress
    inputs_rel: str  # the evaluation inputs (and labels), relative to ``workdir``
    reference_rel: str  # the float reference outputs, relative to ``workdir``
    scratch: Path | None = None  # the ONNX build's scratch folder (the prepared graph); else ``workdir``'s parent
    runners: tuple[str, ...] = ()  # runners that validate the pick again (none: the artifact phase does it)
    linear_ranking: tuple[str, ...] = ()  # torch Linear modules, most sensitive first (edgeq.prepare)

    def revalidate(self, art: Artifact) -> Artifact:
        """The replaced artifact validated on every runner, so the verdict comes from the chosen model."""
        art = dataclasses.replace(art, validations=())
        if not self.runners:
            return art
        return validate_artifacts(ValidationRequest(self.workdir, self.inputs_rel, self.reference_rel, self.runners,
                                                    self.target, self.budget), [art], self.progress)[0]


def first_candidate(artifacts: list[Artifact], first_dynamic: bool = False) -> Artifact | None:
    """The INT8 ONNX model the search may replace: the static one, or the dynamic one when the export built it
    first because the preparation predicted it wins (a user's ``--dynamic`` export is not searched)."""
    names = (ONNX_STATIC, ONNX_DYNAMIC) if first_dynamic else (ONNX_STATIC,)
    return next((a for a in artifacts if a.name in names), None)


def should_search(config: PipelineConfig, budget: Budget, artifacts: list[Artifact],
                  first_dynamic: bool = False) -> bool:
    art = first_candidate(artifacts, first_dynamic)
    if art is None or config.search.mode == "off":
        return False
    if budget.is_empty() and config.search.max_size_ratio is None:
        return False
    if config.search.mode == "always":
        return True
    # auto: the first model missed the budget in force (flags, else the target's defaults) on the host.
    missed = any(not v.budget_check["passed"] for v in art.validations if v.runner == "host")
    if config.search.max_size_ratio is not None:
        fp32 = next((a for a in artifacts if a.name == "onnx-fp32"), None)
        if fp32 is not None and art.bytes > config.search.max_size_ratio * fp32.bytes:
            missed = True
    return missed


def base_options(art: Artifact) -> QuantOptions:
    """The settings the first model was actually built with (after the target's configure passes): its recorded
    recipe, so the search's first trial, which is that model, records the same recipe as the model."""
    q = art.quantization or {}
    recipe = get_object_or_none(q, "recipe")
    if recipe is not None:
        return Recipe.from_dict(recipe, f"{art.name}: quantization.recipe").to_quant_options()
    calibration = get_str_or_none(q, "calibration")
    activation_type, weight_type = get_str_or_none(q, "activation_type"), get_str_or_none(q, "weight_type")
    for value, allowed in ((calibration, CALIBRATION_METHODS), (activation_type, INT_TYPES), (weight_type, INT_TYPES)):
        if value is not None and value not in allowed:
            raise ManifestError(f"the recorded quantization setting {value!r} is not one of {', '.join(allowed)}")
    samples = q.get("calibration_samples")
    # The casts name the Literal types the membership checks above established.
    return QuantOptions(mode="static", calibration=cast(CalibrationMethod | None, calibration),
                        per_channel=bool(q.get("per_channel")),
                        activation_type=cast(IntType | None, activation_type), weight_type=cast(IntType | None, weight_type),
                        reduce_range=bool(q.get("reduce_range")),
                        nodes_to_exclude=tuple(get_strs(q, "nodes_excluded")),
                        op_types_to_exclude=tuple(get_strs(q, "op_types_excluded")),
                        max_calibration_samples=max(1, samples if isinstance(samples, int) and samples else 256))


def run_export_search(ctx: SearchContext, artifacts: list[Artifact],
                      static_base: QuantOptions | None = None) -> JSONObject:
    """Search, replace the ONNX INT8 artifact with the pick in ``artifacts``, re-validate it. Returns manifest keys
    to add.

    ``static_base``: given when the first INT8 model was the predicted dynamic one (no static model was built):
    the resolved settings the static fallbacks start from, instead of the first model's record.
    """
    first_dynamic = static_base is not None
    art = first_candidate(artifacts, first_dynamic)
    if art is None:
        raise UsageError("the ONNX search needs an INT8 ONNX model from this export",
                         "call run_export_search only after should_search() returned True")
    base = (dataclasses.replace(static_base, mode="static", per_token=False) if static_base is not None
            else base_options(art))
    result = _search(ctx, art, base, first_dynamic)
    # Only a trial inside the budget replaces the first model: a candidate the search rejected never ships as
    # "the INT8 model". When nothing met the budget the first model stays with its failing verdict (exit 1) and
    # the closest trials are reported with their distance on each metric (same rule as the .pte search).
    best = result.best if result.met else None
    first = art
    if best is None:
        art = dataclasses.replace(art, quantization={
            **(art.quantization or {}),
            "search": {"trial": None, "met": False, "shipped": "first model (no trial met the budget)",
                       "closest": [t.index for t in result.closest()]}}).refresh(ctx.workdir)
    elif best.path is not None:
        art = _ship_trial(ctx, art, best, best.path, base)
    artifacts[artifacts.index(first)] = art
    met = best is not None  # `best`: the trial that replaced the first model, above
    shipped = f"trial {best.index} ({best.config.label()})" if best is not None else f"the first INT8 model ({art.name})"
    sel = Selection("onnx", met, len(result.trials), result.stopped, shipped, result.time_capped)
    ctx.progress.stage(sel.line())
    if not met:
        print_closest(ctx.progress, [(t.index, t.config.label(), list(t.failures), t.error, t.distance)
                                     for t in result.closest()])
    return {"search": {**result.to_dict(ctx.budget, ctx.config.search, ctx.config.compress.methods), "selection": sel.to_dict()},
            "sensitivity": result.sensitivity}


def _search(ctx: SearchContext, art: Artifact, base: QuantOptions, first_dynamic: bool) -> SearchResult:
    """Run the ONNX ladder on the export's prepared graph and evaluation data."""
    workdir = ctx.workdir
    scratch = ctx.scratch if ctx.scratch is not None else workdir.parent
    prepped = next(p for p in (scratch / "model.prep.onnx", scratch / "model.pre_quant.onnx",
                                workdir / "model.fp32.onnx") if p.is_file())
    ctx.progress.stage(f"searching for an INT8 model inside the budget (≤ {ctx.config.search.max_trials} trials, "
                       f"≤ {ctx.config.search.max_seconds:g} s{', dynamic first (predicted)' if first_dynamic else ''})")
    float_model = workdir / "model.fp32.onnx"
    data = EvalData(prepped, ctx.calib, workdir / ctx.inputs_rel, load_npz(workdir / ctx.reference_rel),
                    load_npz(workdir / ctx.inputs_rel).get("labels"),
                    float_model=float_model if float_model.is_file() else None)
    seed = None if first_dynamic else (workdir / art.path, get_object_or_none(art.quantization or {}, "bias_correction"))
    start = LadderStart(base, ctx.linear_ranking, first_dynamic=first_dynamic, seed=seed)
    return search_onnx(data, start, ctx.budget, ctx.config.search, scratch / SEARCH_DIR, ctx.progress)


def _ship_trial(ctx: SearchContext, art: Artifact, best: Trial, built: Path, base: QuantOptions) -> Artifact:
    """Replace the first model's file (with ``built``, the trial's model); the artifact recorded with the passing
    trial's settings, validated again."""
    art = _rename_for_scheme(ctx.workdir, art, best, base)
    shutil.copyfile(built, ctx.workdir / art.path)
    q: JSONObject = {**(art.quantization or {}), "calibration": best.quant.calibration,
                        "per_channel": bool(best.quant.per_channel),
                        "nodes_excluded": list(best.quant.nodes_to_exclude),
                        "int16_activation_nodes": list(best.quant.int16_activation_nodes),
                        "search": {"trial": best.index, "stage": best.stage, "label": best.config.label(),
                                   "met": True}}  # only a trial inside the budget ships
    if not best.reused:  # a reused trial is the first model's file: its recipe stays
        q["recipe"] = dataclasses.replace(best.recipe(), compression=ctx.config.compress.methods).to_dict()
    q.pop("bias_correction", None)
    if best.bias_correction is not None:
        q["bias_correction"] = best.bias_correction
    if best.config.dynamic:
        per_token = best.quant.per_token
        q.update({"method": "dynamic", "format": "QOperator", "calibration": None,
                  "calibration_samples": 0, "per_token": per_token,
                  "activation_type": "int8 (dynamic, per token)" if per_token else "uint8 (dynamic)",
                  "reduce_range": bool(best.quant.reduce_range),
                  "fp16_linears": list(best.fp16_modules), "fp16_nodes": list(best.fp16_nodes),
                  "tool": (PER_TOKEN_TOOL if per_token else "onnxruntime.quantization.quantize_dynamic")})
    if best.config.hybrid:
        q.update({"method": "hybrid", "dynamic_linears": True,
                                 "tool": "onnxruntime.quantization.quantize_static (convolutions) + "
                                         "quantize_dynamic (linears)"})
    art = dataclasses.replace(art, quantization=q, details=graph_stats(ctx.workdir / art.path))
    return ctx.revalidate(art.refresh(ctx.workdir))


def _rename_for_scheme(workdir: Path, art: Artifact, best: Trial, base: QuantOptions) -> Artifact:
    """A pick of the other scheme than the first model (dynamic for static, or the reverse) ships under its own
    name: the first model's file is removed and the artifact renamed."""
    if best.config.dynamic:  # the pick is a dynamic INT8 model: ship it under its own name
        (workdir / art.path).unlink(missing_ok=True)
        return dataclasses.replace(art, name=ONNX_DYNAMIC, path=ONNX_INT8_DYNAMIC_NAME, precision="int8-dynamic")
    if art.precision == "int8-dynamic":  # a static fallback replaces the predicted dynamic first model
        (workdir / art.path).unlink(missing_ok=True)
        return dataclasses.replace(
            art, name=ONNX_STATIC, path=INT8_NAME, precision="int8-static",
            quantization={**(art.quantization or {}), "method": "static", "format": "QDQ",
                          "calibration_samples": base.max_calibration_samples,
                          "activation_type": best.quant.activation_type, "reduce_range": best.quant.reduce_range,
                          "tool": "onnxruntime.quantization.quantize_static"})
    return art


def print_closest(progress: Progress, rows: list[tuple[int, str, list[str], str | None, dict[str, float]]]) -> None:
    progress.stage("closest trials:")
    for index, label, failures, error, distance in rows:
        progress.stage(f"  trial {index} [{label}]: {'; '.join(failures) or error}"
                       + (f" (distance to the budget: {distance_line(distance)})" if distance else ""))
