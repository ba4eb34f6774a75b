"""Hook the search into ``edgeq export``: decide whether to search, swap in the winner, re-validate it.

When it runs (the first INT8 model of each format: static, or dynamic when the preparation predicted dynamic
wins — :func:`edgeq.prepare.predict_scheme`; a user's ``--dynamic`` export is not searched):
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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgeq.backends.executorch import INT8_DYNAMIC_NAME as PTE_INT8_DYNAMIC_NAME
from edgeq.backends.executorch import bundle_program, static_export
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
from edgeq.jsontypes import get_object_or_none, get_str_or_none, get_strs
from edgeq.manifest import Artifact
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.search.pte_search import closest, search_pte
from edgeq.search.pte_sensitivity import pte_sensitivity
from edgeq.search.search import search_onnx
from edgeq.search.sensitivity import NodeSensitivity, sensitivity_table
from edgeq.select.summary import Selection
from edgeq.targetspec import Target
from edgeq.validate.metrics import distance_line
from edgeq.validate.orchestrate import load_npz, validate_artifacts

if TYPE_CHECKING:
    from edgeq.capture import Captured

ONNX_STATIC = "onnx-int8-static"


ONNX_DYNAMIC = "onnx-int8-dynamic"


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
    """The settings the first model was actually built with (after the target's configure passes)."""
    q = art.quantization or {}
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


def run_export_search(config: PipelineConfig, budget: Budget, workdir: Path, scratch: Path,
                      artifacts: list[Artifact], calib: Dataset, inputs_rel: str, reference_rel: str,
                      runners: tuple[str, ...], target: Target, progress: Progress,
                      linear_ranking: list[str] | None = None,
                      static_base: QuantOptions | None = None) -> dict[str, Any]:
    """Search, replace the ONNX INT8 artifact with the pick, re-validate it. Returns manifest keys to add.

    ``linear_ranking``: torch Linear modules, most sensitive first (edgeq.prepare), for the mixed-precision moves.
    ``static_base``: given when the first INT8 model was the predicted dynamic one (no static model was built):
    the resolved settings the static fallbacks start from, instead of the first model's record.
    """
    first_dynamic = static_base is not None
    art = first_candidate(artifacts, first_dynamic)
    if art is None:
        raise UsageError("the ONNX search needs an INT8 ONNX model from this export",
                         "call run_export_search only after should_search() returned True")
    prepped = next(p for p in (scratch / "model.prep.onnx", scratch / "model.pre_quant.onnx",
                                workdir / "model.fp32.onnx") if p.is_file())
    reference = load_npz(workdir / reference_rel)
    labels = load_npz(workdir / inputs_rel).get("labels")
    progress.stage(f"searching for an INT8 model inside the budget (≤ {config.search.max_trials} trials, "
                   f"≤ {config.search.max_seconds:g} s{', dynamic first (predicted)' if first_dynamic else ''})")
    float_model = workdir / "model.fp32.onnx"
    base = dataclasses.replace(static_base, mode="static") if static_base is not None else base_options(art)
    result = search_onnx(prepped, calib, workdir / inputs_rel, reference, labels, base, budget,
                         config.search, scratch / "search", progress,
                         float_model=float_model if float_model.is_file() else None, linear_ranking=linear_ranking,
                         first_dynamic=first_dynamic,
                         seed=None if first_dynamic else (workdir / art.path,
                                                          get_object_or_none(art.quantization or {}, "bias_correction")))
    # Only a trial inside the budget replaces the first model: a candidate the search rejected never ships as
    # "the INT8 model". When nothing met the budget the first model stays with its failing verdict (exit 1) and
    # the closest trials are reported with their distance on each metric (same rule as the .pte search).
    best = result.best if result.met else None
    if best is None:
        art.quantization = {**(art.quantization or {}),
                            "search": {"trial": None, "met": False, "shipped": "first model (no trial met the budget)",
                                       "closest": [t.index for t in result.closest()]}}
        art.refresh(workdir)
    if best is not None and best.path is not None:
        if best.config.dynamic:  # the pick is a dynamic INT8 model: ship it under its own name

            (workdir / art.path).unlink(missing_ok=True)
            art.name, art.path, art.precision = ONNX_DYNAMIC, ONNX_INT8_DYNAMIC_NAME, "int8-dynamic"
        elif art.precision == "int8-dynamic":  # a static fallback replaces the predicted dynamic first model

            (workdir / art.path).unlink(missing_ok=True)
            art.name, art.path, art.precision = ONNX_STATIC, INT8_NAME, "int8-static"
            art.quantization = {**(art.quantization or {}), "method": "static", "format": "QDQ",
                                "calibration_samples": base.max_calibration_samples,
                                "activation_type": best.quant.activation_type, "reduce_range": best.quant.reduce_range,
                                "tool": "onnxruntime.quantization.quantize_static"}
        shutil.copyfile(best.path, workdir / art.path)
        art.quantization = {**(art.quantization or {}), "calibration": best.quant.calibration,
                            "per_channel": bool(best.quant.per_channel),
                            "nodes_excluded": list(best.quant.nodes_to_exclude),
                            "int16_activation_nodes": list(best.quant.int16_activation_nodes),
                            "search": {"trial": best.index, "stage": best.stage, "label": best.config.label(),
                                       "met": result.met}}
        art.quantization.pop("bias_correction", None)
        if best.bias_correction is not None:
            art.quantization["bias_correction"] = best.bias_correction
        if best.config.dynamic:
            art.quantization.update({"method": "dynamic", "format": "QOperator", "calibration": None,
                                     "calibration_samples": 0, "activation_type": "uint8 (dynamic)",
                                     "reduce_range": bool(best.quant.reduce_range),
                                     "fp16_linears": list(best.fp16_modules), "fp16_nodes": list(best.fp16_nodes),
                                     "tool": "onnxruntime.quantization.quantize_dynamic"})
        if best.config.hybrid:
            art.quantization.update({"method": "hybrid", "dynamic_linears": True,
                                     "tool": "onnxruntime.quantization.quantize_static (convolutions) + "
                                             "quantize_dynamic (linears)"})
        art.details = graph_stats(workdir / art.path)
        art.refresh(workdir)
        art.validations = []
        if runners:
            validate_artifacts(workdir, [art], inputs_rel, reference_rel, runners, target, budget, progress)
    met = best is not None  # `best`: the trial that replaced the first model, above
    shipped = f"trial {best.index} ({best.config.label()})" if best is not None else f"the first INT8 model ({art.name})"
    sel = Selection("onnx", met, len(result.trials), result.stopped, shipped, result.time_capped)
    progress.stage(sel.line())
    if not met:
        _print_closest(progress, [(t.index, t.config.label(), list(t.failures), t.error, t.distance)
                                  for t in result.closest()])
    return {"search": {**result.to_dict(budget, config.search), "selection": sel.to_dict()},
            "sensitivity": result.sensitivity}


def _print_closest(progress: Progress, rows: list[tuple[int, str, list[str], str | None, dict[str, float]]]) -> None:
    progress.stage("closest trials:")
    for index, label, failures, error, distance in rows:
        progress.stage(f"  trial {index} [{label}]: {'; '.join(failures) or error}"
                       + (f" (distance to the budget: {distance_line(distance)})" if distance else ""))


def pte_sensitivity_keys(config: PipelineConfig, budget: Budget, artifacts: list[Artifact], captured: Captured,
                         calib: Dataset, target: Target, progress: Progress, skip_ranking: bool = False) -> dict[str, Any]:
    """``sensitivity_pte``: the PT2E node-by-node ranking, when a ``.pte`` INT8 artifact would be searched.

    Same trigger as the ONNX search (``--search``, or an explicit budget the first model misses). The ``.pte``
    model itself is not re-quantized: the PT2E/XNNPACK flow has no per-node exclusion edgeq could drive yet, so
    the ranking tells the user which modules to keep in float.
    """
    art = next((a for a in artifacts if a.format == "pte" and a.role == "candidate"), None)
    if art is None or captured is None or getattr(captured, "exported", None) is None or config.search.mode == "off":
        return {}
    if budget.is_empty():
        return {}
    missed = any(not v.budget_check["passed"] for v in art.validations)
    if not (config.search.mode == "always" or (not config.budget.is_empty() and missed)):
        return {}
    if skip_ranking:  # the torch-side Linear ranking (edgeq.prepare) orders the moves; no PT2E debugger pass
        return {"sensitivity_pte": []}

    progress.stage("ranking .pte (PT2E) nodes by added quantization error")
    try:
        ranking = pte_sensitivity(captured.program(), calib, captured.signature, config.quant, target,
                                  max_samples=config.search.sensitivity_samples)
    except Exception as e:  # noqa: BLE001  the ranking is a diagnostic; it must never sink the export
        progress.stage(f"  .pte sensitivity unavailable: {type(e).__name__}: {str(e)[:200]}")
        return {"sensitivity_pte": []}  # the search still runs: its moves then follow the torch-side ranking
    return {"sensitivity_pte": sensitivity_table(ranking)}


def run_pte_search(config: PipelineConfig, budget: Budget, workdir: Path, artifacts: list[Artifact], captured: Captured,
                   calib: Dataset, ev: Dataset, inputs_rel: str, reference_rel: str, runners: tuple[str, ...],
                   target: Target, progress: Progress, linear_ranking: list[str] | None = None,
                   first_dynamic: bool = False, backend_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``.pte`` half of the search: rank PT2E nodes, try the moves, ship the first model inside the budget.

    ``first_dynamic``: the first ``.pte`` was already the predicted dynamic model, so the moves start at mixed
    precision and no static program is quantized or lowered (static was predicted to lose).

    Same trigger and budget as the ONNX search. Returns manifest keys ``sensitivity_pte`` and ``search_pte``.
    The winner replaces the INT8 ``.pte`` (and its ``.bpte`` bundle) and is validated again on every runner; when
    no move meets the budget the first model stays, its failing verdict stands and the closest trials are listed.
    """
    keys = pte_sensitivity_keys(config, budget, artifacts, captured, calib, target, progress,
                                skip_ranking=bool(linear_ranking))
    art = next((a for a in artifacts if a.format == "pte" and a.role == "candidate"), None)
    if not keys or art is None or all(v.budget_check["passed"] for v in art.validations):
        return keys

    ranking = [NodeSensitivity(r["node"], r["op_type"], r["tensor"], float("nan"), float(r["xmodel_sqnr_db"] or 0.0),
                               float(r["input_sqnr_db"] or 0.0), float(r["added_nsr"] or 0.0))
               for r in keys.get("sensitivity_pte", [])]
    static = static_export(captured, calib)
    data = load_npz(workdir / inputs_rel)
    eval_inputs = [data[s.name] for s in captured.signature]
    fp32 = next((a for a in artifacts if a.format == "pte" and a.role == "baseline"), None)
    # only an explicit --max-size-ratio: a small program's fixed flatbuffer overhead would fail a default cap
    cap = config.search.max_size_ratio
    progress.stage(f"searching for a .pte INT8 model inside the budget (first model: {art.name})")
    t0 = time.perf_counter()
    trials = search_pte(static, calib, captured.signature, eval_inputs, load_npz(workdir / reference_rel),
                        data.get("labels"), dataclasses.replace(config.quant, mode="static"), budget, target, ranking,
                        workdir.parent / f".{workdir.name}-pte-search", progress,
                        linear_ranking=linear_ranking or [], float_bytes=fp32.bytes if fp32 is not None else None,
                        max_size_ratio=cap, first_dynamic=first_dynamic, backend_config=backend_config)
    winner = next((t for t in trials if t.passed), None)
    if winner is not None and winner.path is not None:
        if winner.quant.mode == "dynamic" and art.precision != "int8-dynamic":  # ship it under its own name

            (workdir / art.path).unlink(missing_ok=True)
            art.name, art.path, art.precision = "pte-int8-dynamic", PTE_INT8_DYNAMIC_NAME, "int8-dynamic"
            bundle_art = next((a for a in artifacts if a.format == "bpte"), None)
            if bundle_art is not None:
                bundle_art.precision = "int8-dynamic"
                bundle_art.details["program"] = PTE_INT8_DYNAMIC_NAME
        shutil.copyfile(winner.path, workdir / art.path)
        # the shipped program's own record: its delegation and the backend config it was lowered with
        art.details = {**art.details, "delegation": winner.delegation, "backend_config": dict(backend_config or {})}
        art.quantization = {**(art.quantization or {}), "method": winner.quant.mode,
                            "dynamic_linears": winner.quant.dynamic_linears,
                            "nodes_excluded": list(winner.quant.nodes_to_exclude),
                            "backend_config": dict(backend_config or {}),
                            "search": {"trial": winner.index, "label": winner.label, "met": True}}
        art.refresh(workdir)
        art.validations = []
        if runners:
            validate_artifacts(workdir, [art], inputs_rel, reference_rel, runners, target, budget, progress)
        bundle = next((a for a in artifacts if a.format == "bpte"), None)
        if bundle is not None and winner.program is not None:  # the golden-I/O bundle carries the shipped program
            ctx = BuildState(target=target, fmt="pte", workdir=workdir, quant=winner.quant, calib=calib, eval=ev,
                             captured=captured)
            bundle.details["bundled"] = bundle_program(ctx, static, winner.program, workdir / art.path)
            bundle.refresh(workdir)
        shipped = f"trial {winner.index} ({winner.label})"
    else:
        shipped = f"the first INT8 model ({art.name})"
    sel = Selection("pte", winner is not None, len(trials), "budget met" if winner is not None else "moves exhausted",
                    shipped)
    progress.stage(sel.line())
    if winner is None:
        _print_closest(progress, [(t.index, t.label, t.failures, t.error, t.distance) for t in closest(trials)])
    shutil.rmtree(workdir.parent / f".{workdir.name}-pte-search", ignore_errors=True)
    keys["search_pte"] = {"met": winner is not None, "seconds": round(time.perf_counter() - t0, 1),
                          "trials": [t.to_dict() for t in trials],
                          "closest": [t.index for t in closest(trials)], "selection": sel.to_dict()}
    return keys
