"""``edgeq sweep``: build a grid of ONNX variants, validate each, plot the trade-off, mark the budget's pick.

ONNX-only. Variants: float32, fp16 (``edgeq.onnx.fp16.convert_fp16``), dynamic INT8, static INT8 with each
calibration method and the other weight granularity, static INT8 with the fragile transformer patterns in float,
and mixed precision (the 8 most sensitive nodes' inputs and outputs at 16-bit activations). Every variant is an artifact in the
output folder's manifest with its own validations on every runner; the manifest's optional ``sweep`` key holds
the host-measured table, the Pareto fronts (accuracy vs bytes, accuracy vs latency) and the pick: the
smallest (then fastest) variant inside the budget. The verdict is ``verdict()`` over every variant, as ``edgeq
check`` computes it on the folder: it passes only when every variant meets the budget (and a pick exists).

The folder is built in a temporary sibling and renamed into place, like ``edgeq export``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeq.config import Budget, PipelineConfig, QuantOptions
from edgeq.errors import EdgeqError
from edgeq.manifest import Artifact, read_manifest, write_manifest
from edgeq.progress import Progress
from edgeq.search.svg import pareto_front

VARIANT_DIR = "variants"


def _static_variants(base: QuantOptions, patterns: dict[str, list[str]]) -> list[tuple[str, QuantOptions]]:
    out = []
    for method in ("minmax", "percentile", "entropy"):
        if method != base.calibration:
            out.append((f"onnx-int8-static-{method}", replace(base, calibration=method)))
    other = "per-tensor" if base.per_channel else "per-channel"
    out.append((f"onnx-int8-static-{other}", replace(base, per_channel=not base.per_channel)))
    fragile = tuple(n for names in patterns.values() for n in names)
    if fragile:
        out.append(("onnx-int8-static-fragile-fp32",
                    replace(base, nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *fragile))))))
    return out


def pick_variant(rows: list[dict[str, Any]]) -> str | None:
    """Smallest passing variant; sizes within 5 % of the smallest count as equal and the fastest wins."""
    passing = [r for r in rows if r.get("passed")]
    if not passing:
        return None
    small = min(r["bytes"] for r in passing)
    near = [r for r in passing if r["bytes"] <= small * 1.05]
    return str(min(near, key=lambda r: (r["latency_ms"] if r["latency_ms"] is not None else math.inf,
                                        r["bytes"]))["name"])


def run_sweep(config: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Build, validate and report the grid; returns the manifest (``verdict``: every variant inside the budget)."""
    from edgeq.api import INPUTS_REL, REFERENCE_REL, export
    from edgeq.backends.onnx import graph_stats, rename_outputs
    from edgeq.data import load_dataset
    from edgeq.integrity import seal
    from edgeq.onnx.export import preprocess
    from edgeq.onnx.fp16 import convert_fp16
    from edgeq.onnx.quantize import quantize_onnx_dynamic, quantize_onnx_static
    from edgeq.outdir import commit_output, discard_output, prepare_output
    from edgeq.report import write_reports
    from edgeq.search.integrate import ONNX_STATIC, base_options
    from edgeq.search.patterns import Neighbourhood, fragile_nodes
    from edgeq.search.sensitivity import onnx_sensitivity
    from edgeq.targets import load_target
    from edgeq.validate.orchestrate import validate_artifacts, verdict

    progress = progress or Progress(enabled=False)
    load_target(config.target)  # a bad target fails before anything is written
    holder = prepare_output(config.output, config.force)
    scratch = Path(tempfile.mkdtemp(prefix="edgeq-sweep-"))
    try:
        run = holder / "run"
        base_cfg = replace(config, output=run, force=False, formats=("onnx",),
                           quant=replace(config.quant, mode="static"),
                           search=replace(config.search, mode="off"))
        result = export(base_cfg, progress)
        m = read_manifest(run)
        target = load_target(config.target)
        budget = Budget(**m["budget"])
        # fleet: selectors validate the base export; the variants run on the other runners (one at a time)
        runners = tuple(s for s in m["config"]["validate_on"] if not s.startswith("fleet:"))
        arts = [Artifact.from_dict(a) for a in m["artifacts"]]
        static = next(a for a in arts if a.name == ONNX_STATIC)
        base = base_options(static)

        calib = load_dataset(config.calib)
        if config.eval is None:
            calib, _ = calib.split(config.eval_fraction, config.seed)
        progress.stage("sweep: pre-processing the float graph")
        prepped, _ = preprocess(run / "model.fp32.onnx", scratch / "model.prep.onnx")
        names = [o["name"] for o in m["signature"]["outputs"]]
        (run / VARIANT_DIR).mkdir()
        have = {a.name for a in arts}
        new: list[Artifact] = []

        def add(name: str, precision: str, build: Any) -> None:
            if name in have:
                return
            rel = f"{VARIANT_DIR}/{name}.onnx"
            progress.stage(f"sweep: building {name}")
            try:
                info = build(run / rel)
            except EdgeqError as e:  # one variant failing must not sink the sweep; it is listed as an error
                progress.stage(f"  -> skipped: {e.cause}")
                return
            rename_outputs(run / rel, names)
            a = Artifact(name=name, path=rel, format="onnx", precision=precision, role="candidate",
                         quantization=info, details=graph_stats(run / rel))
            a.refresh(run)
            new.append(a)
            have.add(name)

        add("onnx-fp16", "fp16", lambda p: {"method": "fp16", **convert_fp16(run / "model.fp32.onnx", p)})
        add("onnx-int8-dynamic", "int8-dynamic", lambda p: quantize_onnx_dynamic(prepped, p, base))
        patterns = fragile_nodes(prepped)
        for name, q in _static_variants(base, patterns):
            add(name, "int8-static", lambda p, q=q: quantize_onnx_static(prepped, p, calib, q))
        try:
            ranking = onnx_sensitivity(prepped, run / static.path, calib, max_samples=config.search.sensitivity_samples)
        except Exception as e:  # noqa: BLE001  no ranking -> no mixed-precision variant, said out loud
            progress.stage(f"note: no onnx-mixed-int16 variant: the sensitivity analysis failed "
                           f"({type(e).__name__}: {str(e)[:200]})")
            ranking = []
        if ranking:
            hood = Neighbourhood(prepped)
            q16 = replace(base, int16_activation_nodes=tuple(dict.fromkeys(
                n for s in ranking[:8] for n in hood.with_input_producers(s.node))))
            add("onnx-mixed-int16", "mixed", lambda p: quantize_onnx_static(prepped, p, calib, q16))

        validate_artifacts(run, new, INPUTS_REL, REFERENCE_REL, runners, target, budget, progress)
        arts += new
        m["artifacts"] = [a.to_dict() for a in arts]
        m["sweep"] = sweep_table(arts, budget, has_labels=bool(m["validation_data"]["has_labels"]))
        if ranking:
            from edgeq.search.sensitivity import sensitivity_table

            m["sensitivity"] = sensitivity_table(ranking)
        pick = m["sweep"]["pick"]
        # The one verdict function, over every variant: what `edgeq check` will say about this folder.
        m["verdict"] = verdict(arts, m["passes"])
        if pick is None:
            m["verdict"]["failures"].append("no variant of the sweep meets the budget on the host")
            m["verdict"]["passed"] = False
        write_manifest(m, run)
        write_reports(m, run)
        write_manifest(seal(m, run), run)
        commit_output(run, config.output)
        del result
    finally:
        discard_output(holder, config.output)  # also releases OUTDIR's lock
        shutil.rmtree(scratch, ignore_errors=True)
    progress.stage(f"wrote {config.output}")
    return m


def sweep_table(arts: list[Artifact], budget: Budget, has_labels: bool) -> dict[str, Any]:
    """Host rows, Pareto flags and the pick (ONNX artifacts with a host validation)."""
    from edgeq.validate.metrics import Metrics, check_budget

    fp32 = next((a for a in arts if a.name == "onnx-fp32"), None)
    metric = "accuracy" if has_labels else "cosine_mean"
    rows: list[dict[str, Any]] = []
    for a in arts:
        v = next((v for v in a.validations if v.runner == "host"), None)
        if a.format != "onnx" or v is None:
            continue
        mt = v.metrics
        bc = check_budget(Metrics.from_dict(mt), budget)
        rows.append({"name": a.name, "precision": a.precision, "path": a.path, "bytes": a.bytes,
                     "size_ratio": a.bytes / fp32.bytes if fp32 and fp32.bytes else None,
                     "latency_ms": v.latency_ms, "metrics": mt, "passed": bc.passed, "failures": list(bc.failures),
                     "label": (a.quantization or {}).get("calibration")})
    if metric == "accuracy" and any(r["metrics"].get("accuracy") is None for r in rows):
        metric = "cosine_mean"
    ys = [float(r["metrics"][metric]) for r in rows]
    for key, xs in (("pareto_bytes", [float(r["bytes"]) for r in rows]),
                    ("pareto_latency", [float(r["latency_ms"] or 0.0) for r in rows])):
        front = set(pareto_front(list(zip(xs, ys, strict=True))))
        for i, r in enumerate(rows):
            r[key] = i in front
    return {"metric": metric, "pick": pick_variant(rows), "budget": budget.to_dict(), "variants": rows}
