"""Hook the ``.pte`` search into ``edgeq export``: rank the PT2E nodes, try the moves, ship the first model inside
the budget (same trigger and budget as the ONNX search, :mod:`edgeq.search.integrate`)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeq.backends.executorch import INT8_DYNAMIC_NAME, PteBuildInputs, bundle_program, static_export
from edgeq.capture import Captured
from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject, JSONValue, get_objects, get_str
from edgeq.manifest import Artifact
from edgeq.pipeline.state import BuildState
from edgeq.recipe import Recipe
from edgeq.search.integrate import SearchContext, print_closest
from edgeq.search.pte_search import PteSearchData, PteTrial, closest, search_pte
from edgeq.search.pte_sensitivity import pte_sensitivity
from edgeq.search.sensitivity import NodeSensitivity, sensitivity_table
from edgeq.select.summary import Selection
from edgeq.validate.orchestrate import load_npz

if TYPE_CHECKING:
    import torch


def _db(value: JSONValue) -> float:
    """A ranking row's dB / NSR as ``sensitivity_table`` wrote it: a number, ``"inf"``, or null (read as 0)."""
    return float(value) if isinstance(value, int | float | str) and value else 0.0


def _pte_candidate(artifacts: list[Artifact]) -> Artifact | None:
    return next((a for a in artifacts if a.format == "pte" and a.role == "candidate"), None)


def pte_sensitivity_keys(ctx: SearchContext, artifacts: list[Artifact], captured: Captured | None,
                         skip_ranking: bool = False) -> JSONObject:
    """``sensitivity_pte``: the PT2E node-by-node ranking, when a ``.pte`` INT8 artifact would be searched.

    Same trigger as the ONNX search (``--search``, or an explicit budget the first model misses). The ``.pte``
    model itself is not re-quantized: the PT2E/XNNPACK flow has no per-node exclusion edgeq could drive yet, so
    the ranking tells the user which modules to keep in float.
    """
    config, art = ctx.config, _pte_candidate(artifacts)
    if art is None or captured is None or getattr(captured, "exported", None) is None or config.search.mode == "off":
        return {}
    if ctx.budget.is_empty():
        return {}
    missed = any(not v.budget_check["passed"] for v in art.validations)
    if not (config.search.mode == "always" or (not config.budget.is_empty() and missed)):
        return {}
    if skip_ranking:  # the torch-side Linear ranking (edgeq.prepare) orders the moves; no PT2E debugger pass
        return {"sensitivity_pte": []}
    ctx.progress.stage("ranking .pte (PT2E) nodes by added quantization error")
    try:
        ranking = pte_sensitivity(captured.program(), ctx.calib, captured.signature, config.quant, ctx.target,
                                  max_samples=config.search.sensitivity_samples)
    except Exception as e:  # noqa: BLE001  the ranking is a diagnostic; it must never sink the export
        ctx.progress.stage(f"  .pte sensitivity unavailable: {type(e).__name__}: {str(e)[:200]}")
        return {"sensitivity_pte": []}  # the search still runs: its moves then follow the torch-side ranking
    return {"sensitivity_pte": sensitivity_table(ranking)}


@dataclasses.dataclass(frozen=True)
class PteSearchInputs:
    """What the ``.pte`` search needs from the format's build, besides the search context."""

    captured: Captured  # what the INT8 models were built from (the outlier-prepared copy, if any)
    ev: Dataset  # the evaluation set (the golden-I/O bundle of the shipped program is built from it)
    first_dynamic: bool = False  # the first .pte was already the predicted dynamic model
    backend_config: JSONObject = dataclasses.field(default_factory=dict)  # the target's ExecutorchBackendConfig


def run_pte_search(ctx: SearchContext, artifacts: list[Artifact], inputs: PteSearchInputs) -> JSONObject:
    """The ``.pte`` half of the search: rank PT2E nodes, try the moves, ship the first model inside the budget.

    ``inputs.first_dynamic``: the first ``.pte`` was already the predicted dynamic model, so the moves start at
    mixed precision and no static program is quantized or lowered (static was predicted to lose).

    Same trigger and budget as the ONNX search. Returns manifest keys ``sensitivity_pte`` and ``search_pte``.
    The winner replaces the INT8 ``.pte`` (and its ``.bpte`` bundle) and is validated again on every runner; when
    no move meets the budget the first model stays, its failing verdict stands and the closest trials are listed.
    """
    keys = pte_sensitivity_keys(ctx, artifacts, inputs.captured, skip_ranking=bool(ctx.linear_ranking))
    art = _pte_candidate(artifacts)
    if not keys or art is None or all(v.budget_check["passed"] for v in art.validations):
        return keys
    static = static_export(inputs.captured, ctx.calib)
    ctx.progress.stage(f"searching for a .pte INT8 model inside the budget (first model: {art.name})")
    t0 = time.perf_counter()
    trials = _search(ctx, artifacts, inputs, static, get_objects(keys, "sensitivity_pte"))
    winner = next((t for t in trials if t.passed), None)
    if winner is not None and winner.path is not None:
        _ship_winner(ctx, artifacts, inputs, static, winner)
        shipped = f"trial {winner.index} ({winner.label})"
    else:
        shipped = f"the first INT8 model ({art.name})"
    sel = Selection("pte", winner is not None, len(trials), "budget met" if winner is not None else "moves exhausted",
                    shipped)
    ctx.progress.stage(sel.line())
    if winner is None:
        print_closest(ctx.progress, [(t.index, t.label, t.failures, t.error, t.distance) for t in closest(trials)])
    shutil.rmtree(_scratch(ctx), ignore_errors=True)
    keys["search_pte"] = {"met": winner is not None, "best": winner.index if winner is not None else None,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "trials": [t.to_dict(inputs.captured.source.compression) for t in trials],
                          "closest": [t.index for t in closest(trials)], "selection": sel.to_dict()}
    return keys


def _scratch(ctx: SearchContext) -> Path:
    return ctx.workdir.parent / f".{ctx.workdir.name}-pte-search"


def _search(ctx: SearchContext, artifacts: list[Artifact], inputs: PteSearchInputs, static: torch.export.ExportedProgram,
            rows: list[JSONObject]) -> list[PteTrial]:
    """Run the ``.pte`` moves on the static-batch program, ordered by the ranking ``rows`` (``sensitivity_pte``)."""
    ranking = [NodeSensitivity(get_str(r, "node"), get_str(r, "op_type"), get_str(r, "tensor"), float("nan"),
                               _db(r["xmodel_sqnr_db"]), _db(r["input_sqnr_db"]), _db(r["added_nsr"]))
               for r in rows]
    data = load_npz(ctx.workdir / ctx.inputs_rel)
    fp32 = next((a for a in artifacts if a.format == "pte" and a.role == "baseline"), None)
    build = PteBuildInputs(calib=ctx.calib, static=static, signature=list(inputs.captured.signature),
                           target=ctx.target, backend_config=inputs.backend_config)
    search_data = PteSearchData(
        build=build, eval_inputs=[data[s.name] for s in inputs.captured.signature],
        reference=load_npz(ctx.workdir / ctx.reference_rel), labels=data.get("labels"), budget=ctx.budget,
        scratch=_scratch(ctx), float_bytes=fp32.bytes if fp32 is not None else None,
        # only an explicit --max-size-ratio: a small program's fixed flatbuffer overhead would fail a default cap
        max_size_ratio=ctx.config.search.max_size_ratio)
    static_base = dataclasses.replace(ctx.config.quant, mode="static", per_token=False)
    return search_pte(search_data, static_base, ranking, ctx.progress, linear_ranking=list(ctx.linear_ranking),
                      first_dynamic=inputs.first_dynamic)


def _ship_winner(ctx: SearchContext, artifacts: list[Artifact], inputs: PteSearchInputs, static: torch.export.ExportedProgram,
                 winner: PteTrial) -> None:
    """Replace the first ``.pte`` (and its ``.bpte`` bundle's program) with the winner in ``artifacts``, then
    validate it again."""
    workdir, first = ctx.workdir, _pte_candidate(artifacts)
    first_bundle = bundle = next((a for a in artifacts if a.format == "bpte"), None)
    if first is None or winner.path is None:
        return
    art = first
    if winner.quant.mode == "dynamic" and art.precision != "int8-dynamic":  # ship it under its own name
        (workdir / art.path).unlink(missing_ok=True)
        art = dataclasses.replace(art, name="pte-int8-dynamic", path=INT8_DYNAMIC_NAME, precision="int8-dynamic")
        if bundle is not None:
            bundle = dataclasses.replace(bundle, precision="int8-dynamic").with_detail("program", INT8_DYNAMIC_NAME)
    shutil.copyfile(winner.path, workdir / art.path)
    # the shipped program's own record: its delegation and the backend config it was lowered with
    art = dataclasses.replace(
        art, details={**art.details, "delegation": winner.delegation, "backend_config": dict(inputs.backend_config)},
        quantization={**(art.quantization or {}), "method": winner.quant.mode,
                      "dynamic_linears": winner.quant.dynamic_linears,
                      "nodes_excluded": list(winner.quant.nodes_to_exclude),
                      "fp16_float_linears": winner.quant.fp16_float_linears,
                      "backend_config": dict(inputs.backend_config),
                      # what the shipped file is built from (the --compress steps included)
                      "recipe": dataclasses.replace(Recipe.from_quant_options(winner.quant),
                                                    compression=inputs.captured.source.compression).to_dict(),
                      "search": {"trial": winner.index, "label": winner.label, "met": True}})
    artifacts[artifacts.index(first)] = ctx.revalidate(art.refresh(workdir))
    if bundle is not None and winner.program is not None:  # the golden-I/O bundle carries the shipped program
        state = BuildState(target=ctx.target, fmt="pte", workdir=workdir, quant=winner.quant, calib=ctx.calib,
                           eval=inputs.ev, captured=inputs.captured)
        bundled = bundle_program(state, static, winner.program, workdir / art.path)
        bundle = bundle.with_detail("bundled", bundled).refresh(workdir)
    if bundle is not None and first_bundle is not None:
        artifacts[artifacts.index(first_bundle)] = bundle
