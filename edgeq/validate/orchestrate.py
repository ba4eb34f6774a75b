"""Validate artifacts in an output folder on one or more runners, and turn the results into a verdict."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.config import Budget
from edgeq.data import check_labels
from edgeq.jsontypes import JSONObject, get_float, get_strs
from edgeq.manifest import Artifact, Validation
from edgeq.progress import Progress
from edgeq.select.verdict import ArtifactCheck
from edgeq.select.verdict import verdict as select_verdict
from edgeq.targetspec import Target
from edgeq.validate.fleet_run import FleetRun, RunInputs, fleet_verdict, validation_of
from edgeq.validate.latency import paired_onnx_latency
from edgeq.validate.metrics import ACCURACY_FALLBACK
from edgeq.validate.regressions import int8_regressions
from edgeq.validate.runners import get_runner


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class ValidationRequest:
    """Where a folder's evaluation data lives, and what validates its artifacts against which budget."""

    outdir: Path
    inputs_rel: str  # the evaluation inputs (and labels), relative to ``outdir``
    reference_rel: str  # the float reference outputs, relative to ``outdir``
    runner_specs: tuple[str, ...]
    target: Target
    budget: Budget
    # host runs happen in a child process, so a native crash on an untrusted file (``check``) is a typed error
    # instead of the end of edgeq
    isolate: bool = False
    # SSH boards validated in parallel (edgeq.validate.fleet_run), after the runners of ``runner_specs``; their
    # outcomes stay in ``fleet`` for the manifest's fleet section
    fleet: FleetRun | None = None


def validate_artifacts(req: ValidationRequest, artifacts: list[Artifact], progress: Progress) -> list[Artifact]:
    """Run every validated artifact on every runner that supports its format; each gets its Validation records
    (a new Artifact in the same place of ``artifacts``, which is also returned)."""
    outdir, budget, fleet = req.outdir, req.budget, req.fleet
    inputs_path = outdir / req.inputs_rel
    reference = load_npz(outdir / req.reference_rel)
    data = load_npz(inputs_path)
    labels = data.get("labels")
    if labels is not None:
        primary = next(iter(reference.values()))
        classes = int(primary.shape[1]) if primary.ndim == 2 and primary.shape[1] > 1 else None
        labels = check_labels(labels, str(inputs_path), classes)  # within the model's classes, before any run
    runners = [get_runner(spec, req.target) for spec in req.runner_specs]
    jobs = [(i, runner) for i, art in enumerate(artifacts) if art.role != "auxiliary"
            for runner in runners if runner.supports(art.format)]
    n_samples = len(next(iter(reference.values())))
    n_fleet = fleet.jobs_for(artifacts) if fleet is not None else 0
    progress.stage(f"validating {len(jobs) + n_fleet} artifact/runner pair(s) on {n_samples} samples")
    with (tempfile.TemporaryDirectory(prefix="edgeq-run-") as tmp,
          progress.bar(len(jobs) + n_fleet, "validation", unit="run") as bar):
        for i, runner in jobs:
            art, where = artifacts[i], runner.describe()
            bar.set_postfix_str(f"{art.name} on {where['runner']}"
                                + (f" ({where['cpu_model']})" if where.get("emulated") else ""))
            # the host runner runs each artifact in a forked child with the target's deadline (runners.host)
            result = runner.run(outdir / art.path, art.format, inputs_path, Path(tmp))
            bar.update(1)
            artifacts[i] = art.with_validation(validation_of(where, result, reference, labels, budget))
        if fleet is not None:
            fleet.run(artifacts, RunInputs(outdir, inputs_path, reference, labels, budget, Path(tmp)), progress, bar)
    if not req.isolate and any(r.name == "host" for r in runners):
        # Not for untrusted files (isolate): the paired timing loads every model into this process.
        pair_host_latency(outdir, artifacts, data, progress)
    return artifacts


PAIRED_FORMATS = ("onnx", "ort")  # one onnxruntime session type; the .pte runtime has no thread-count setting here


def pair_host_latency(outdir: Path, artifacts: list[Artifact], inputs: dict[str, np.ndarray],
                      progress: Progress) -> None:
    """Replace the host latency of each float model and its quantized candidates by one paired measurement.

    Per format: the float baseline and every validated candidate of that format are timed interleaved, one
    thread, batch 1 (edgeq.validate.latency); ``latency_ms`` becomes the median and ``latency_detail`` says how,
    with the median per-round ratio to float. Only when a float baseline of the format was validated here too.
    """
    for fmt in PAIRED_FORMATS:
        base = next((a for a in artifacts if a.format == fmt and a.role == "baseline" and a.precision == "fp32"
                     and _host_validation(a) is not None), None)
        cands = [a for a in artifacts if a.format == fmt and a.role == "candidate" and _host_validation(a) is not None]
        if base is None or not cands:
            continue
        progress.stage(f"timing {fmt}: float and {len(cands)} quantized model(s) interleaved, 1 thread, batch 1")
        try:
            timed = paired_onnx_latency(outdir / base.path, [outdir / a.path for a in cands], inputs)
        except Exception as e:  # noqa: BLE001  timing never fails a build: keep each run's own latency
            progress.stage(f"paired {fmt} timing skipped ({type(e).__name__}: {str(e)[:120]}); "
                           "latencies are single measurement runs")
            continue
        for art in (base, *cands):
            v = _host_validation(art)
            rec = timed.get(outdir / art.path)
            if v is not None and rec is not None:
                timed_v = dataclasses.replace(v, latency_ms=float(get_float(rec, "latency_ms")), latency_detail=rec)
                artifacts[artifacts.index(art)] = dataclasses.replace(
                    art, validations=tuple(timed_v if x is v else x for x in art.validations))


def _host_validation(art: Artifact) -> Validation | None:
    return next((v for v in art.validations if v.runner == "host" and v.latency_ms is not None), None)


def verdict(artifacts: list[Artifact], pass_log: Sequence[JSONObject],
            fleet: JSONObject | None = None) -> JSONObject:
    """Pass when every validated artifact meets the budget on every runner and no pass reported a failure.

    A tensor export's verdict: export, check, validate and sweep all call it, and it composes ``passed`` and
    ``failures`` with the one verdict function (:func:`edgeq.select.verdict.verdict`, which the text-generation
    export and check use too) from each validation's budget check and the pass log. ``notes`` says how a limit was
    checked when not as asked (no labels) or that it could not be; the verdict line prints them. ``fleet`` (the
    manifest's fleet section): per-status board counts, and ``infra_failures`` when fewer boards answered than
    ``min_boards`` — not a budget failure (see :func:`exit_code`)."""
    checks: list[ArtifactCheck] = []
    notes: list[str] = []
    for art in artifacts:
        for v in art.validations:
            where = v.runner + (f" ({v.cpu_model})" if v.emulated else "")
            checks.append(ArtifactCheck(f"{art.name} on {where}", bool(v.budget_check.get("passed", True)),
                                        tuple(get_strs(v.budget_check, "failures"))))
            notes.extend(ACCURACY_FALLBACK if n.startswith(ACCURACY_FALLBACK) else n.split(" (", 1)[0]
                         for n in get_strs(v.budget_check, "notes"))
    stages = [f"pass {p['name']}: {f}" for p in pass_log for f in get_strs(p, "failures")]
    summary, infra = fleet_verdict(fleet) if fleet else (None, [])
    outcome = select_verdict(checks, after=stages, infra=infra,
                             none_checked="no artifact was validated (no runner supports the produced formats)")
    out: JSONObject = {**outcome.to_dict(), "host_passes_arm_fails": _host_pass_arm_fail(artifacts),
                       "notes": list(dict.fromkeys(notes)), "int8_regressions": int8_regressions(artifacts)}
    if summary is not None:
        out.update(fleet=summary, infra_failures=infra)
    return out


def exit_code(v: Mapping[str, object]) -> int:
    """0 pass; 1 a budget failure (a definite result more boards cannot change); 3 when the run itself fell
    short: fewer boards answered than ``--min-boards`` and nothing was over budget."""
    if v["passed"]:
        return 0
    return 1 if v["failures"] else 3


def _host_pass_arm_fail(artifacts: list[Artifact]) -> list[str]:
    """Artifacts that pass on the x86 host but fail on ARM kernels — the case emulation exists to catch."""
    flagged = []
    for art in artifacts:
        host_ok = [v.budget_check["passed"] for v in art.validations if v.runner == "host"]
        arm_bad = [v for v in art.validations if v.runner != "host" and not v.budget_check["passed"]]
        if host_ok and all(host_ok) and arm_bad:
            flagged.append(f"{art.name}: passes on host, fails on {', '.join(v.runner + ' ' + v.cpu_model for v in arm_bad)}")
    return flagged
