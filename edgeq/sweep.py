"""``edgeq sweep``: build a grid of ONNX variants, validate each, plot the trade-off, mark the budget's pick.

ONNX-only. Variants: float32, fp16 (``edgeq.onnx.fp16.convert_fp16``), dynamic INT8, static INT8 with each
calibration method and the other weight granularity, static INT8 with the fragile transformer patterns in float,
and mixed precision (the 8 most sensitive nodes' inputs and outputs at 16-bit activations). Every variant is an artifact in the
output folder's manifest with its own validations on every runner; the manifest's optional ``sweep`` key holds
the host-measured table, the Pareto fronts (accuracy vs bytes, accuracy vs latency) and the selection engine's
pick (:func:`edgeq.select.rule.pick`: the smallest variant inside the budget, ties to the earliest built). The verdict is ``verdict()`` over every variant, as ``edgeq
check`` computes it on the folder: it passes only when every variant meets the budget (and a pick exists).

The folder is built in a temporary sibling and renamed into place, like ``edgeq export``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from edgeq.api import export
from edgeq.config import Budget, PipelineConfig
from edgeq.integrity import seal
from edgeq.jsontypes import JSONObject, get_float, get_int, get_strs
from edgeq.manifest import Artifact, Validation, read_manifest, write_manifest
from edgeq.outdir import commit_output, discard_output, prepare_output
from edgeq.progress import Progress
from edgeq.report import write_reports
from edgeq.search.grid import VARIANT_DIR
from edgeq.select.rule import Scored, pareto_front, pick
from edgeq.select.verdict import verdict as select_verdict
from edgeq.targets import load_target
from edgeq.validate.metrics import Metrics, check_budget
from edgeq.validate.orchestrate import verdict

__all__ = ["VARIANT_DIR", "pick_variant", "run_sweep", "sweep_table"]



def pick_variant(rows: Sequence[Mapping[str, object]]) -> str | None:
    """The selection engine's pick over the sweep's rows (in build order): smallest inside the budget, sizes within
    5 % of it tie and the earliest built wins — never a latency, so the pick is the same on any machine."""
    chosen = pick([Scored(i, get_int(r, "bytes"), bool(r.get("passed"))) for i, r in enumerate(rows)])
    return None if chosen is None else str(rows[chosen.order]["name"])


def run_sweep(config: PipelineConfig, progress: Progress | None = None) -> JSONObject:
    """Build, validate and report the grid; returns the manifest (``verdict``: every variant inside the budget).

    The grid is the export's SELECT phase with the grid strategy (:mod:`edgeq.search.grid`): the variants come
    from the same pre-processed graph, calibration set and builder as ``edgeq export``, pass through the target's
    artifact stages and are validated on every runner. This adds the table, the Pareto fronts and the pick."""
    progress = progress or Progress(enabled=False)
    load_target(config.target)  # a bad target fails before anything is written
    holder = prepare_output(config.output, config.force)
    try:
        run = holder / "run"
        static = replace(config.quant, mode="static", per_token=False)
        export(replace(config, output=run, force=False, formats=("onnx",), quant=static,
                       search=replace(config.search, mode="grid")), progress)
        m = read_manifest(run)
        arts = m.artifact_list()
        table = sweep_table(arts, Budget.from_dict(m.budget), has_labels=m.validation_data.has_labels)
        # The one verdict function, over every variant: what `edgeq check` will say about this folder.
        v = verdict(arts, m.passes, m.fleet)
        if table["pick"] is None:  # the grid's "no candidate met" line, after the per-variant failures
            v.update(select_verdict((), before=get_strs(v, "failures"), infra=get_strs(v, "infra_failures"),
                                    after=["no variant of the sweep meets the budget on the host"]).to_dict())
        m = write_manifest(replace(m, sweep=table, verdict=v), run)
        write_reports(m.to_json(), run)
        m = write_manifest(seal(m, run), run)
        commit_output(run, config.output)
    finally:
        discard_output(holder, config.output)  # also releases OUTDIR's lock
    progress.stage(f"wrote {config.output}")
    return m.to_json()


def sweep_table(arts: list[Artifact], budget: Budget, has_labels: bool) -> JSONObject:
    """Host rows, Pareto flags and the pick (ONNX artifacts with a host validation)."""
    fp32 = next((a for a in arts if a.name == "onnx-fp32"), None)
    metric = "accuracy" if has_labels else "cosine_mean"
    rows: list[JSONObject] = []
    hosts: list[Validation] = []  # each row's host validation, in row order
    for a in arts:
        v = next((v for v in a.validations if v.runner == "host"), None)
        if a.format != "onnx" or v is None:
            continue
        hosts.append(v)
        mt = v.metrics
        bc = check_budget(Metrics.from_dict(mt), budget)
        rows.append({"name": a.name, "precision": a.precision, "path": a.path, "bytes": a.bytes,
                     "size_ratio": a.bytes / fp32.bytes if fp32 and fp32.bytes else None,
                     "latency_ms": v.latency_ms, "metrics": mt, "passed": bc.passed, "failures": list(bc.failures),
                     "label": (a.quantization or {}).get("calibration")})
    if metric == "accuracy" and any(v.metrics.get("accuracy") is None for v in hosts):
        metric = "cosine_mean"
    ys = [float(get_float(v.metrics, metric)) for v in hosts]
    for key, xs in (("pareto_bytes", [float(get_int(r, "bytes")) for r in rows]),
                    ("pareto_latency", [float(v.latency_ms or 0.0) for v in hosts])):
        front = set(pareto_front(list(zip(xs, ys, strict=True))))
        for i, r in enumerate(rows):
            r[key] = i in front
    return {"metric": metric, "pick": pick_variant(rows), "budget": budget.to_dict(), "variants": rows}
