"""The SELECT phase of a format's build: between quantize/emit and the artifact stages (Emitters and Checks).

The first INT8 model of the format is checked on the host against the budget; when it misses (or ``--search``),
the format's search (a ladder strategy of :mod:`edgeq.select`) tries its moves and the first model is replaced by
the pick. Because this runs *before* the artifact phase, whatever ships passes through the target's emitters and
checks exactly once (``.ort`` conversion, mobile usability, 16 KB alignment, the budget check) and every runner
validates it once afterwards. The check's host validation is dropped again at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeq.backends.onnx import PREP_NAME
from edgeq.config import Budget, PipelineConfig
from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject
from edgeq.manifest import Artifact
from edgeq.outdir import INPUTS_REL, REFERENCE_REL
from edgeq.pipeline.pipeline import Pipeline
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.search.grid import GridInputs, onnx_grid
from edgeq.search.integrate import SearchContext, run_export_search, should_search
from edgeq.search.integrate_pte import PteSearchInputs, run_pte_search
from edgeq.validate.orchestrate import ValidationRequest, validate_artifacts


@dataclass(frozen=True)
class SelectContext:
    """What every format's selection reads, besides the format's own build state."""

    config: PipelineConfig
    budget: Budget
    calib: Dataset
    progress: Progress
    qat: bool = False  # QAT ships its trained ranges; a re-calibrating search would discard them
    linear_ranking: tuple[str, ...] = ()  # torch Linears, most sensitive first (edgeq.prepare)
    first_dynamic: dict[str, bool] = field(default_factory=dict)  # per format: the first model was predicted dynamic


Selector = Callable[[SelectContext, BuildState, list[Artifact]], JSONObject]


def select(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    """Run the format's selection; returns the manifest keys it adds (``search``, ``search_pte``, ...)."""
    if ctx.config.search.mode == "grid":
        return _grid_onnx(ctx, state, built) if state.fmt == "onnx" else {}
    if ctx.config.search.mode == "off" or (ctx.budget.is_empty() and ctx.config.search.max_size_ratio is None):
        return {}
    selector = SELECTORS.get(state.fmt)
    if selector is None:
        return {}
    if ctx.qat:
        ctx.progress.stage(f"search ({state.fmt}): not run (--compress qat ships the QAT-trained ranges)")
        return {}
    return selector(ctx, state, built)


def _host_checked(state: BuildState, built: list[Artifact], budget: Budget,
                  run: Callable[[], JSONObject]) -> JSONObject:
    """Run ``run`` with the candidates validated on the host (what decides whether to search); that validation is
    dropped afterwards, since every runner validates what ships once, after the artifact stages."""
    at = [i for i, a in enumerate(built) if a.role == "candidate"]
    checked = validate_artifacts(ValidationRequest(state.workdir, INPUTS_REL, REFERENCE_REL, ("host",), state.target,
                                                   budget), [built[i] for i in at], Progress(False))
    for i, a in zip(at, checked, strict=True):
        built[i] = a
    try:
        return run()
    finally:  # nothing is validated before SELECT: every validation in ``built`` is this host check's
        built[:] = [replace(a, validations=()) if a.validations else a for a in built]


def _select_onnx(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    return _host_checked(state, built, ctx.budget, lambda: _search_onnx(ctx, state, built))


def _search_onnx(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    first_dynamic = ctx.first_dynamic.get("onnx", False)
    if not should_search(ctx.config, ctx.budget, built, first_dynamic=first_dynamic):
        return {}
    return run_export_search(_search_context(ctx, state, _scratch(state)), built,
                             static_base=state.quant if first_dynamic else None)


def _select_pte(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    # The .pte search starts on --search or an explicit budget only (pte_sensitivity_keys), never on the target's
    # defaults alone: without either, the host check would only run the .pte once more for nothing.
    if ctx.config.search.mode != "always" and ctx.config.budget.is_empty():
        return {}
    return _host_checked(state, built, ctx.budget, lambda: _search_pte(ctx, state, built))


def _search_pte(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    if state.eval is None or state.captured is None:  # a .pte is built from a captured torch program only
        return {}
    # state.captured: what the INT8 models were built from (the outlier-prepared copy, if any)
    inputs = PteSearchInputs(state.captured, state.eval, first_dynamic=ctx.first_dynamic.get("pte", False),
                             backend_config=state.executorch_backend_config.kwargs())
    return run_pte_search(_search_context(ctx, state), built, inputs)


def _search_context(ctx: SelectContext, state: BuildState, scratch: Path | None = None) -> SearchContext:
    """The search's view of this run (no runners: every runner validates what ships after the artifact phase)."""
    return SearchContext(ctx.config, ctx.budget, state.workdir, ctx.calib, state.target, ctx.progress, INPUTS_REL,
                         REFERENCE_REL, scratch=scratch, linear_ranking=ctx.linear_ranking)


def _grid_onnx(ctx: SelectContext, state: BuildState, built: list[Artifact]) -> JSONObject:
    """The sweep's grid, built beside the first static model from the same graph, data and builder."""
    first = next((a for a in built if a.role == "candidate" and a.precision == "int8-static"), None)
    if first is None:
        return {}
    inputs = GridInputs(workdir=state.workdir, prepped=_scratch(state) / PREP_NAME, calib=ctx.calib, base=state.quant,
                        output_names=state.output_names, sensitivity_samples=ctx.config.search.sensitivity_samples,
                        with_fp16=not any(s.name == "fp16-variant" and s.applies_to(state.target)
                                          for s in Pipeline.for_target(state.target).stages))
    variants, ranking = onnx_grid(inputs, first, ctx.progress)
    built.extend(variants)
    return {"sensitivity": ranking} if ranking else {}


def _scratch(state: BuildState) -> Path:
    return state.scratch if state.scratch is not None else state.workdir.parent


# One selector per format: a new format registers its search here (its moves live beside its backend).
SELECTORS: dict[str, Selector] = {"onnx": _select_onnx, "pte": _select_pte}
