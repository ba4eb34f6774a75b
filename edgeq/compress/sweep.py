"""``edgeq sweep --methods``: compression methods × levels, found by trial.

Each method climbs its ladder from the mildest level (prune 10 → 20 → 30 % …) and stops once a level leaves the
budget; every level is a full ``edgeq export`` (fine-tune, both formats, validation on every runner) in
``OUTDIR/trials/<method>-<level>``. Ladders run in parallel local processes, or as Ray tasks (``--ray ADDRESS``). The INT8-only export is the baseline.
The pick is the smallest, then fastest, variant whose verdict passed; the report plots accuracy against bytes and
latency with the Pareto front and the budget drawn.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import shutil
import socket
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from edgeq.api import export
from edgeq.compress.spec import MethodConfig, parse_item
from edgeq.compress.sweep_report import SweepSummary, write_sweep_report
from edgeq.config import PipelineConfig
from edgeq.errors import EdgeqError, UsageError
from edgeq.jsontypes import JSONObject, get_float, get_int, get_object, get_objects, get_str
from edgeq.outdir import commit_output, prepare_output
from edgeq.progress import Progress
from edgeq.select.rule import Scored, pareto_front
from edgeq.select.rule import pick as select_pick

if TYPE_CHECKING:
    from types import ModuleType

DEFAULT_LADDERS: dict[str, tuple[str, ...]] = {
    "prune": ("0.1", "0.2", "0.3", "0.4", "0.5"),
    "sparse": ("0.3", "0.5", "0.7"),
    "lowrank": ("0.99", "0.95", "0.9", "0.8"),
    "cluster": ("256", "64", "16"),
    "qat": ("8", "4"),  # INT8 weights, then 4-bit
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


def _row(name: str, manifest: JSONObject, method: str | None, level: float | None) -> JSONObject:
    """One variant's measured numbers: per format, the INT8 candidate's bytes and first-runner metrics."""
    formats: dict[str, JSONObject] = {}
    for a in get_objects(manifest, "artifacts"):
        validations = get_objects(a, "validations")
        if a["role"] != "candidate" or get_str(a, "format") in formats or not validations:
            continue
        v = validations[0]
        metrics = get_object(v, "metrics")
        formats[get_str(a, "format")] = {"artifact": a["name"], "bytes": a["bytes"], "latency_ms": v["latency_ms"],
                                         "accuracy": metrics.get("accuracy"),
                                         "reference_accuracy": metrics.get("reference_accuracy"),
                                         "top1_agreement": metrics.get("top1_agreement"),
                                         "cosine": metrics.get("cosine_mean"), "runner": v["runner"]}
    first: JSONObject = next(iter(formats.values()), {})
    verdict = get_object(manifest, "verdict")
    return {"name": name, "method": method, "level": level, "passed": verdict["passed"],
            "failures": verdict["failures"], "bytes": first.get("bytes"),
            "latency_ms": first.get("latency_ms"), "accuracy": first.get("accuracy"),
            "reference_accuracy": first.get("reference_accuracy"), "top1_agreement": first.get("top1_agreement"), "cosine": first.get("cosine"), "formats": formats}


def _run_one(base: PipelineConfig, cfg: MethodConfig | None, trials: Path) -> JSONObject:
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


def _run_ladder(base: PipelineConfig, ladder: tuple[MethodConfig, ...], trials: Path) -> list[JSONObject]:
    """Climb one method's ladder; stop at the first level that leaves the budget (it is kept, marked failed)."""
    rows = []
    for cfg in ladder:
        row = _run_one(base, cfg, trials)
        rows.append(row)
        if not row["passed"]:
            break
    return rows


def pick(rows: list[JSONObject]) -> str | None:
    """The selection engine's pick (:func:`edgeq.select.rule.pick`) over rows whose verdict passed."""
    chosen = select_pick([Scored(i, get_int(r, "bytes"), bool(r["passed"])) for i, r in enumerate(rows)
                          if r["bytes"] is not None])
    return None if chosen is None else str(rows[chosen.order]["name"])


def pareto(rows: list[JSONObject], metric: str) -> list[str]:
    """Variants no other variant beats on bytes and the metric at once (the engine's one Pareto front)."""
    pts = [r for r in rows if r["bytes"] is not None and r.get(metric) is not None]
    front = pareto_front([(float(get_float(r, "bytes")), float(get_float(r, metric))) for r in pts])
    return [get_str(pts[i], "name") for i in sorted(front)]


def _run_job(base: PipelineConfig, name: str, ladder: tuple[MethodConfig, ...], trials: Path) -> list[JSONObject]:
    """One unit of parallel work: the INT8 baseline, or one method's whole ladder (climbed in order)."""
    return [_run_one(base, None, trials)] if name == "int8" else _run_ladder(base, ladder, trials)


def _run_local(base: PipelineConfig, jobs: list[tuple[str, tuple[MethodConfig, ...]]], trials: Path, workers: int,
               progress: Progress) -> list[JSONObject]:
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    rows: list[JSONObject] = []
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
        futures: dict[str, Future[list[JSONObject]]] = {
            name: pool.submit(_run_job, base, name, lad, trials) for name, lad in jobs}
        for name, fut in futures.items():
            rows += fut.result()
            progress.stage(f"sweep: {name} done")
    return rows


def connect_ray(address: str) -> ModuleType:
    """Connect this process to the Ray cluster at ``address`` (``host:port``, ``ray://host:port`` or ``auto``).

    A driver that already called ``ray.init`` keeps its connection. Errors say whether Ray is missing or the
    cluster cannot be reached, instead of Ray's own minute-long retry loop.
    """
    try:
        import ray  # optional dependency: ray (the [ray] extra)
    except ImportError as e:
        raise UsageError("--ray needs the Ray package, which is not installed",
                         "pip install 'edgeq[ray]' (or drop --ray to run trials in local processes)") from e
    if ray.is_initialized():
        return ray
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if address != "auto":
        if not sep or not port.isdigit():
            raise UsageError(f"--ray {address!r} is not host:port", "e.g. --ray 127.0.0.1:6379 (see `ray start --head`)")

        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except OSError as e:
            raise UsageError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e})",
                             "start one with `ray start --head` and pass the address it prints, or drop --ray") from e

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # ConnectionError, RuntimeError ...: all mean "no usable cluster"
        raise UsageError(f"--ray {address}: cannot join the Ray cluster ({type(e).__name__}: {str(e)[:200]})",
                         "check the address printed by `ray start --head` and that the Ray versions match") from e
    return ray


def _run_on_ray(address: str, base: PipelineConfig, jobs: list[tuple[str, tuple[MethodConfig, ...]]], trials: Path,
                progress: Progress) -> list[JSONObject]:
    """The same jobs as Ray tasks (one CPU each). Trial folders are written by the workers, so OUTDIR must be
    on a filesystem they share with this machine (always true for a local Ray instance)."""
    ray = connect_ray(address)
    task = ray.remote(num_cpus=1)(_run_job)
    refs = {name: task.remote(base, name, lad, trials) for name, lad in jobs}
    rows: list[JSONObject] = []
    for name, ref in refs.items():
        try:
            rows += ray.get(ref)
        except Exception as e:  # a worker crash surfaces as RayTaskError / WorkerCrashedError
            raise EdgeqError(f"sweep: Ray task {name!r} failed: {type(e).__name__}: {str(e)[:300]}",
                             "run the same sweep without --ray to see the trial's own error") from e
        progress.stage(f"sweep: {name} done (Ray)")
    return rows


def run_compress_sweep(base: PipelineConfig, ladders: dict[str, tuple[MethodConfig, ...]], workers: int = 2,
                       progress: Progress | None = None, ray_address: str | None = None) -> SweepSummary:
    """Run the baseline and every ladder; write OUTDIR/{sweep.json, report.html, trials/}; return the summary.

    ``ray_address``: run the jobs as Ray tasks on that cluster instead of ``workers`` local processes."""
    progress = progress or Progress(enabled=False)
    if not ladders:
        raise UsageError("--methods is empty", "e.g. --methods prune,lowrank,cluster")
    if base.compress.enabled:
        raise UsageError("give the methods to sweep with --methods, not --compress")
    tmp = prepare_output(base.output, base.force)
    try:
        trials = tmp / "trials"
        trials.mkdir()
        jobs: list[tuple[str, tuple[MethodConfig, ...]]] = [("int8", ())] + list(ladders.items())
        if ray_address:
            progress.stage(f"sweep: INT8 baseline + {len(ladders)} ladder(s) as Ray tasks on {ray_address}")
            rows = _run_on_ray(ray_address, base, jobs, trials, progress)
        else:
            progress.stage(f"sweep: INT8 baseline + {len(ladders)} ladder(s) in {max(1, workers)} process(es)")
            rows = _run_local(base, jobs, trials, workers, progress)
        metric = "accuracy" if any(r.get("accuracy") is not None for r in rows) else "top1_agreement"
        summary: SweepSummary = {"metric": metric, "pick": pick(rows), "pareto": pareto(rows, metric), "variants": rows,
                   "executor": f"ray {ray_address}" if ray_address else f"{max(1, workers)} local process(es)",
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
