"""``check``: re-validate an output folder — the CI gate. It trusts the files and the command line, not the manifest.

- Every file is confined to the folder, re-hashed, and a missing or an unlisted file fails (``edgeq.integrity``).
- Each artifact's format is recomputed from its bytes; every runnable one (.onnx, .ort, .pte) is validated, whatever
  role or format the manifest claims. Differences are reported.
- The budget comes from the CLI flags over the target profile. The target is a packaged profile named by the
  manifest or a file given on the command line, never a path from the manifest. The manifest's budget is shown
  and a difference is reported; it is not obeyed.
- Runners come from ``--on`` or the default (host, plus the emulator for ARM targets once set up); ``check``
  never connects to a host named in the manifest. Host runs happen in a subprocess, so a runtime that crashes on
  a hostile file becomes a typed error.
- The stored float reference must match the float baseline artifact, so a regenerated reference is caught.
- A text-generation folder (its reference file holds per-token NLL) is re-measured by ``edgeq.llm.check``:
  perplexity of every runnable artifact on the stored windows against the stored float NLL, gated on
  ``--max-ppl-increase`` (the command line over the budget recorded at export).
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict, Unpack

from edgeq.config import Budget, FleetOptions
from edgeq.emulator.sysroot import is_ready
from edgeq.errors import ManifestError, UsageError
from edgeq.integrity import RUNNABLE, audit, sniff_format
from edgeq.jsontypes import (
    JSONObject,
    get_float,
    get_object_or_none,
    get_strs,
)
from edgeq.llm.check import LmCheck, check_lm, is_text_generation
from edgeq.llm.target_checks import items_from_files, run_checks
from edgeq.manifest import Artifact, Manifest, Validation, read_manifest
from edgeq.progress import Progress
from edgeq.select.verdict import verdict as select_verdict
from edgeq.signing import verify_folder
from edgeq.stages.budget_check import NAME, check_artifact
from edgeq.targets import load_target, packaged_target, with_runner_timeout
from edgeq.targetspec import Target
from edgeq.validate.bundled import check_bundle
from edgeq.validate.fleet_run import split_runners
from edgeq.validate.orchestrate import ValidationRequest, validate_artifacts, verdict
from edgeq.validate.runners.host import HostRunner

# A float baseline must reproduce the stored reference this closely (measured fp32 ORT vs torch: cosine 1.0000,
# SQNR > 100 dB on the digits CNN); anything lower means the reference is not this model's.
REFERENCE_MIN_COSINE = 0.999


@dataclass
class CheckResult:
    output: Path
    passed: bool
    failures: list[str]
    artifacts: list[Artifact]
    budget: Budget
    manifest: JSONObject
    host_passes_arm_fails: list[str]
    findings: list[str] = field(default_factory=list)  # manifest claims that the files or the CLI overrode
    notes: list[str] = field(default_factory=list)
    llm: LmCheck | None = None  # set for text-generation folders (then ``budget`` is empty)
    fleet: JSONObject | None = None  # the boards of a fleet run (edgeq.validate.fleet_run.FleetRun.record)
    fleet_verdict: JSONObject | None = None  # per-status board counts
    infra_failures: list[str] = field(default_factory=list)  # fewer boards answered than --min-boards


def _check_target(m: Manifest, target: str | None) -> Target:
    """The profile ``check`` enforces: the command line's, else the packaged one the manifest names (by name only)."""
    return load_target(target) if target else packaged_target(m.target.name)


def default_runners(target: Target) -> tuple[str, ...]:
    specs = ["host"]
    if target.is_arm and target.default_runner == "emulator" and target.cpu.qemu_model and is_ready():
        specs.append("emulator")
    return tuple(specs)


def _recompute_artifacts(records: Sequence[JSONObject], out: Path) -> tuple[list[Artifact], list[str]]:
    """The manifest's artifact records, each with the format its bytes have (a runnable one is a candidate)."""
    arts, findings = [], []
    for d in records:
        a = Artifact.from_dict({**d, "validations": []})
        fmt = sniff_format(out / a.path)
        if (fmt in (*RUNNABLE, "bpte") or a.format in (*RUNNABLE, "bpte")) and fmt != a.format:
            findings.append(f"{a.name}: the manifest says format {a.format!r}, the bytes are {fmt!r}")
            if fmt == "unknown":
                raise ManifestError(f"{a.path}: not a readable {a.format} file", "re-run edgeq export")
            a = replace(a, format=fmt)
        if fmt in RUNNABLE and a.role == "auxiliary":
            findings.append(f"{a.name}: the manifest marks a runnable {fmt} model 'auxiliary'; validated anyway")
            a = replace(a, role="candidate")
        arts.append(a)
    return arts, findings


def _gating_passes(m: Manifest, arts: list[Artifact], out: Path, tgt: Target) -> list[JSONObject]:
    """The recorded passes, with the budget-check recomputed from the bytes and this target (its recorded
    failures could have been deleted from the manifest)."""
    kept = [p for p in m.passes if p.get("name") != NAME]
    if NAME in tgt.passes:
        failures: list[str] = []
        for a in arts:
            if a.format in ("onnx", "ort", "pte"):
                failures += check_artifact(a, out, tgt.storage_mb, tgt.ram_mb)[1]
        kept.append({"name": NAME, "failures": failures})
    return kept


@dataclass(frozen=True)
class CheckRequest:
    """What one ``check`` enforces: the folder, and the command line's budget, runners, target and limits."""

    outdir: Path
    budget: Budget | None = None  # over the target profile's defaults (tensor models)
    runners: tuple[str, ...] | None = None  # None: the default runners (host, plus the emulator when set up)
    target: str | None = None  # a profile name or file; None: the packaged profile the manifest names
    public_key: Path | None = None  # verify the folder's signature first
    max_ppl_increase: float | None = None  # text-generation folders: over the budget recorded at export
    float_model: str | None = None  # text-generation folders: recompute the float perplexity from this model
    runner_timeout: float | None = None  # seconds, over the profile's runner_timeout_s
    fleet: FleetOptions | None = None


class CheckOptions(TypedDict, total=False):
    """The rarely used keywords of :func:`check`, each the :class:`CheckRequest` field of the same name."""

    public_key: str | Path | None  # verify the folder's signature first
    max_ppl_increase: float | None  # text-generation folders: over the budget recorded at export
    float_model: str | None  # text-generation folders: recompute the float perplexity from this model
    runner_timeout: float | None  # seconds, over the profile's runner_timeout_s
    fleet: FleetOptions | None


def check(outdir: str | Path, budget: Budget | None = None, runners: tuple[str, ...] | None = None,
          progress: Progress | None = None, target: str | None = None,
          **options: Unpack[CheckOptions]) -> CheckResult:
    """Re-validate the export folder ``outdir`` (see the module doc); the documented keyword entry point over
    :func:`run_check`. ``options`` are the keywords of :class:`CheckOptions`: ``public_key``,
    ``max_ppl_increase``, ``float_model``, ``runner_timeout`` and ``fleet``."""
    unknown = sorted(set(options) - CheckOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"check() got an unexpected keyword argument {unknown[0]!r}")
    key = options.get("public_key")
    request = CheckRequest(Path(outdir), budget, runners, target, Path(key) if key is not None else None,
                           options.get("max_ppl_increase"), options.get("float_model"),
                           options.get("runner_timeout"), options.get("fleet"))
    return run_check(request, progress or Progress(enabled=False))


def run_check(req: CheckRequest, progress: Progress) -> CheckResult:
    """:func:`check` with its arguments in one typed request."""
    out = req.outdir
    if req.public_key is not None:
        verify_folder(out, req.public_key)  # provenance first: the manifest below is then the signed one
    m = read_manifest(out)
    audit(m, out)
    arts, findings = _recompute_artifacts(m.artifacts, out)

    if is_text_generation(m.to_json(), out):  # edgeq.llm.check reads the JSON document
        return _check_lm(req, m, arts, findings, progress)
    if req.max_ppl_increase is not None or req.float_model is not None:
        raise UsageError("--max-ppl-increase and --float-model apply to text-generation folders only",
                         f"{out} holds a tensor-model export; use --max-accuracy-drop / --min-cosine ...")
    return _check_tensor(req, m, arts, findings, progress)


def _check_tensor(req: CheckRequest, m: Manifest, arts: list[Artifact], findings: list[str],
                  progress: Progress) -> CheckResult:
    out = req.outdir
    tgt = with_runner_timeout(_check_target(m, req.target), req.runner_timeout)
    eff = (req.budget or Budget()).merged_over(tgt.validation)
    findings += _budget_findings(m, eff, tgt)
    listed = m.config.get("validate_on")
    recorded = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else []
    remote = [s for s in recorded if "://" in s or s.startswith("fleet:")]
    if remote and not req.runners:
        findings.append(f"not contacting runner(s) named in the manifest: {', '.join(remote)} (use --on)")
    specs, boards = split_runners(req.runners or default_runners(tgt), tgt, req.fleet or FleetOptions())
    if boards is not None:
        boards.preflight(progress)
    inputs, reference = m.validation_data.inputs.path, m.validation_data.reference.path
    validate_artifacts(ValidationRequest(out, inputs, reference, specs, tgt, eff,
                                         isolate=True, fleet=boards), arts, progress)
    if "host" in specs:
        findings += _check_bundles(out, arts, eff, tgt, progress)
    record = boards.record() if boards is not None else None
    v = verdict(arts, _gating_passes(m, arts, out, tgt), record)
    # With --compress the float baseline is the compressed model and the reference the original one: the baseline
    # then cannot equal the reference, so it must meet the budget against it instead (still failing a reference
    # regenerated from another model, unless the budget is loose enough to admit that model too).
    compressed = bool(m.compression)
    if compressed:
        findings.append("the manifest declares compression: the float baseline is held to the budget against the "
                        "stored reference instead of to identity with it")
    failures = get_strs(v, "failures") + _baseline_failures(arts, compressed)
    infra = get_strs(v, "infra_failures")
    return CheckResult(out, not failures and not infra, failures, arts, eff, replace_budget(m, eff),
                       get_strs(v, "host_passes_arm_fails"), findings, get_strs(v, "notes"), fleet=record,
                       fleet_verdict=get_object_or_none(v, "fleet"), infra_failures=infra)


def _budget_findings(m: Manifest, eff: Budget, tgt: Target) -> list[str]:
    """The manifest's budget is shown, not obeyed: a difference from the enforced one is a finding."""
    stored = Budget.from_dict(m.budget)
    if stored == eff:
        return []
    diff = ", ".join(f"{k} {getattr(stored, k)} -> {getattr(eff, k)}" for k in eff.to_dict()
                     if getattr(stored, k) != getattr(eff, k))
    return [f"budget differs from the manifest's ({diff}); enforced: the command line over the {tgt.name} profile"]


def _baseline_failures(arts: list[Artifact], compressed: bool) -> list[str]:
    """The float baseline must reproduce the stored reference (or, compressed, meet the budget against it)."""
    failures = []
    for a in arts:
        for val in a.validations:
            if a.role != "baseline" or a.precision != "fp32":
                continue
            if compressed and not val.budget_check["passed"]:
                failures.append(f"{a.name} on {val.runner}: the compressed float model misses the budget against "
                                f"the stored reference ({'; '.join(get_strs(val.budget_check, 'failures'))})")
            elif not compressed and get_float(val.metrics, "cosine_min") < REFERENCE_MIN_COSINE:
                failures.append(f"{a.name} on {val.runner}: the stored float reference does not match the float "
                                f"model (min cosine {val.metrics['cosine_min']:.4f}); reference or model replaced")
    return failures


def _check_bundles(out: Path, arts: list[Artifact], eff: Budget, tgt: Target, progress: Progress) -> list[str]:
    """Each .bpte: its program runs its bundled inputs and must give its bundled outputs (edgeq.validate.bundled)."""
    bundles = [a for a in arts if a.format == "bpte"]
    if not bundles:
        return []
    if not HostRunner().supports("pte"):
        return [f"{a.name}: not re-validated (the ExecuTorch runtime is not installed here)" for a in bundles]
    progress.stage(f"running the bundled inputs of {len(bundles)} .bpte bundle(s)")
    with tempfile.TemporaryDirectory(prefix="edgeq-bundle-") as tmp:
        for a in bundles:  # each bundle's record, on the artifact in its place of ``arts``
            arts[arts.index(a)] = a.with_validation(check_bundle(out, a, eff, Path(tmp), tgt.runner_timeout_s))
    return []


def _check_lm(req: CheckRequest, m: Manifest, arts: list[Artifact], findings: list[str],
              progress: Progress) -> CheckResult:
    out, runners, budget = req.outdir, req.runners, req.budget
    if runners and set(runners) != {"host"}:
        raise UsageError(f"--on {','.join(runners)}: language models are checked on the host runtimes only",
                         "drop --on (LM artifacts are built for and measured on the host CPU)")
    if budget is not None and not budget.is_empty():
        raise UsageError("--max-accuracy-drop / --min-cosine / --min-sqnr / --min-top1-agreement do not apply to "
                         "a text-generation folder", "use --max-ppl-increase PCT")
    progress.stage(f"re-measuring perplexity of {sum(a.format in ('onnx', 'pte') for a in arts)} language "
                   "model artifact(s) on the stored windows")
    with tempfile.TemporaryDirectory(prefix="edgeq-check-lm-") as tmp:
        res = check_lm(m.to_json(), out, arts, req.max_ppl_increase, req.float_model, Path(tmp))
    # the target's checks again, from the bytes and the profile (the CLI's, else the packaged one the manifest names)
    tgt = _check_target(m, req.target)
    target_failures = [f for p in run_checks(tgt, out, items_from_files(arts), None, 0)
                       for f in get_strs(p, "failures")]
    by_name = {r.name: r for r in res.artifacts}
    for i, a in enumerate(arts):
        r = by_name.get(a.name)
        if r is not None:
            arts[i] = replace(a, validations=(Validation(
                runner="host", machine=platform.machine(), cpu_model=platform.processor() or "host", features=[],
                emulated=False, metrics=dict(r.metrics), latency_ms=None, latency_kind="none",
                runtime="onnxruntime" if r.format == "onnx" else "executorch-pybind",
                budget_check={"max_ppl_increase_pct": res.max_ppl_increase_pct, "ppl_ratio": r.metrics["ppl_ratio"],
                              "passed": r.passed, "failures": list(r.failures)}),))
    m2: JSONObject = {**m.to_json(), "budget_in_manifest": m.budget,
          "budget": {"max_ppl_increase_pct": res.max_ppl_increase_pct, "source": res.budget_source}}
    # the re-measured artifacts' failures, then the target's checks
    v = select_verdict((), before=res.failures, after=target_failures)
    return CheckResult(out, v.passed, list(v.failures), arts, Budget(), m2, [], findings + list(res.findings), [], llm=res)


def replace_budget(m: Manifest, eff: Budget) -> JSONObject:
    """The manifest as the report shows it: the budget enforced, and the one it recorded beside it."""
    return {**m.to_json(), "budget_in_manifest": m.budget, "budget": eff.to_dict()}


