"""``edgeq sweep --methods``: compression methods × levels, found by trial.

Each method climbs its ladder from the mildest level (prune 10 → 20 → 30 % …) and stops once a level leaves the
budget; every level is a full ``edgeq export`` (fine-tune, both formats, validation on every runner) in
``OUTDIR/trials/<method>-<level>``. Ladders run in parallel local processes. The INT8-only export is the baseline.
The pick is the smallest, then fastest, variant whose verdict passed; the report plots accuracy against bytes and
latency with the Pareto front and the budget drawn.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from edgeq.compress.spec import MethodConfig, parse_item
from edgeq.config import PipelineConfig
from edgeq.errors import EdgeqError, UsageError
from edgeq.progress import Progress

DEFAULT_LADDERS: dict[str, tuple[str, ...]] = {
    "prune": ("0.1", "0.2", "0.3", "0.4", "0.5"),
    "sparse": ("0.3", "0.5", "0.7"),
    "lowrank": ("0.99", "0.95", "0.9", "0.8"),
    "cluster": ("256", "64", "16"),
    "qat": ("",),
}


def parse_ladders(spec: str) -> dict[str, tuple[MethodConfig, ...]]:
    """``prune:0.1:0.2:0.3,lowrank,cluster:256:16`` → one ladder per method (a bare name: its default ladder)."""
    ladders: dict[str, tuple[MethodConfig, ...]] = {}
    for item in spec.split(","):
        name, *levels = [t.strip() for t in item.split(":")]
        if not name:
            raise UsageError(f"--methods {spec!r}: empty item", "e.g. --methods prune:0.1:0.2:0.3,lowrank,cluster")
        if name in ladders:
            raise UsageError(f"--methods {spec!r}: {name!r} listed twice")
        if name not in DEFAULT_LADDERS:
            raise UsageError(f"--methods: unknown method {item!r}", f"choose from {', '.join(DEFAULT_LADDERS)}")
        levels = levels or list(DEFAULT_LADDERS[name])
        ladders[name] = tuple(parse_item(f"{name}:{lv}" if lv else name) for lv in levels)
    return ladders


def _variant_name(cfg: MethodConfig | None) -> str:
    return "int8" if cfg is None else f"{cfg.name}-{cfg.level:g}"


def _row(name: str, manifest: dict[str, Any], method: str | None, level: float | None) -> dict[str, Any]:
    """One variant's measured numbers: per format, the INT8 candidate's bytes and first-runner metrics."""
    formats: dict[str, Any] = {}
    for a in manifest["artifacts"]:
        if a["role"] != "candidate" or a["format"] in formats or not a["validations"]:
            continue
        v = a["validations"][0]
        formats[a["format"]] = {"artifact": a["name"], "bytes": a["bytes"], "latency_ms": v["latency_ms"],
                                "accuracy": v["metrics"].get("accuracy"),
                                "reference_accuracy": v["metrics"].get("reference_accuracy"),
                                "top1_agreement": v["metrics"].get("top1_agreement"),
                                "cosine": v["metrics"].get("cosine_mean"), "runner": v["runner"]}
    first: dict[str, Any] = next(iter(formats.values()), {})
    return {"name": name, "method": method, "level": level, "passed": manifest["verdict"]["passed"],
            "failures": manifest["verdict"]["failures"], "bytes": first.get("bytes"),
            "latency_ms": first.get("latency_ms"), "accuracy": first.get("accuracy"),
            "reference_accuracy": first.get("reference_accuracy"), "top1_agreement": first.get("top1_agreement"), "cosine": first.get("cosine"), "formats": formats}


def _run_one(base: PipelineConfig, cfg: MethodConfig | None, trials: Path) -> dict[str, Any]:
    from edgeq.api import export

    name = _variant_name(cfg)
    methods = () if cfg is None else (cfg,)
    config = dataclasses.replace(base, output=trials / name, force=True,
                                 compress=dataclasses.replace(base.compress, methods=methods))
    try:
        result = export(config, Progress(False))
    except EdgeqError as e:
        return {"name": name, "method": cfg.name if cfg else None, "level": cfg.level if cfg else None,
                "passed": False, "failures": [str(e.cause)], "error": e.cause, "bytes": None, "latency_ms": None,
                "accuracy": None, "top1_agreement": None, "cosine": None, "formats": {}}
    return _row(name, result.manifest, cfg.name if cfg else None, cfg.level if cfg else None)


def _run_ladder(base: PipelineConfig, ladder: tuple[MethodConfig, ...], trials: Path) -> list[dict[str, Any]]:
    """Climb one method's ladder; stop at the first level that leaves the budget (it is kept, marked failed)."""
    rows = []
    for cfg in ladder:
        row = _run_one(base, cfg, trials)
        rows.append(row)
        if not row["passed"]:
            break
    return rows


def pick(rows: list[dict[str, Any]]) -> str | None:
    """Smallest, then fastest, variant whose verdict passed."""
    ok = [r for r in rows if r["passed"] and r["bytes"] is not None]
    if not ok:
        return None
    best = min(ok, key=lambda r: (r["bytes"], r["latency_ms"] if r["latency_ms"] is not None else float("inf")))
    return str(best["name"])


def pareto(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """Variants no other variant beats on bytes, latency and the metric at once."""
    pts = [r for r in rows if r["bytes"] is not None and r.get(metric) is not None]
    front = []
    for r in pts:
        lat = r["latency_ms"] if r["latency_ms"] is not None else float("inf")
        dominated = any(o is not r and o["bytes"] <= r["bytes"] and (o["latency_ms"] or float("inf")) <= lat
                        and o[metric] >= r[metric] and (o["bytes"] < r["bytes"] or o[metric] > r[metric]
                                                        or (o["latency_ms"] or float("inf")) < lat) for o in pts)
        if not dominated:
            front.append(r["name"])
    return front


def run_compress_sweep(base: PipelineConfig, ladders: dict[str, tuple[MethodConfig, ...]], workers: int = 2,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Run the baseline and every ladder; write OUTDIR/{sweep.json, report.html, trials/}; return the summary."""
    from edgeq.compress.sweep_report import write_sweep_report
    from edgeq.outdir import commit_output, prepare_output

    progress = progress or Progress(enabled=False)
    if not ladders:
        raise UsageError("--methods is empty", "e.g. --methods prune,lowrank,cluster")
    if base.compress.enabled:
        raise UsageError("give the methods to sweep with --methods, not --compress")
    tmp = prepare_output(base.output, base.force)
    try:
        trials = tmp / "trials"
        trials.mkdir()
        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        jobs = [("int8", ())] + [(m, lad) for m, lad in ladders.items()]
        progress.stage(f"sweep: INT8 baseline + {len(ladders)} ladder(s) in {max(1, workers)} process(es)")
        rows: list[dict[str, Any]] = []
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
            futures: dict[str, Future[Any]] = {}
            for name, lad in jobs:
                futures[name] = (pool.submit(_run_one, base, None, trials) if name == "int8"
                                 else pool.submit(_run_ladder, base, lad, trials))
            for name, fut in futures.items():
                res = fut.result()
                rows += res if isinstance(res, list) else [res]
                progress.stage(f"sweep: {name} done")
        metric = "accuracy" if any(r.get("accuracy") is not None for r in rows) else "top1_agreement"
        summary = {"metric": metric, "pick": pick(rows), "pareto": pareto(rows, metric), "variants": rows,
                   "ladders": {m: [c.level for c in lad] for m, lad in ladders.items()},
                   "budget": base.budget.to_dict(), "formats": list(base.formats),
                   "compress_train": dataclasses.asdict(base.compress.train)}
        (tmp / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
        write_sweep_report(summary, tmp / "report.html")
        commit_output(tmp, base.output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
