"""``export``: source -> capture -> per-format build + target passes -> validate -> manifest + reports.

Everything is written to a temporary sibling of the output folder and renamed into place at the end, so an
error or Ctrl-C never leaves a partial output folder behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.capture import capture
from edgeq.config import Budget, PipelineConfig
from edgeq.data import Dataset, check_against_signature, load_dataset
from edgeq.errors import OutputExistsError, UsageError
from edgeq.formats import BuildContext, get_backend
from edgeq.hashing import sha256_file
from edgeq.manifest import Artifact, new_manifest, write_manifest
from edgeq.passes.registry import PassContext, apply_stage
from edgeq.progress import Progress
from edgeq.reference import output_names_for, reference_outputs
from edgeq.signature import TensorSpec
from edgeq.source import load_source
from edgeq.targets import Target, load_target
from edgeq.validate.orchestrate import validate_artifacts, verdict

VALIDATION_DIR = "validation"
INPUTS_REL = f"{VALIDATION_DIR}/inputs.npz"
REFERENCE_REL = f"{VALIDATION_DIR}/reference.npz"


@dataclass
class ExportResult:
    """What ``edgeq.export`` returns: the output folder, the manifest and convenient views of it."""

    output: Path
    manifest: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.manifest["verdict"]["passed"])

    @property
    def failures(self) -> list[str]:
        return list(self.manifest["verdict"]["failures"])

    @property
    def artifacts(self) -> list[Artifact]:
        return [Artifact.from_dict(a) for a in self.manifest["artifacts"]]

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(f"no artifact {name!r}; have {[a.name for a in self.artifacts]}")

    @property
    def report_html(self) -> Path:
        return self.output / "report.html"


AUTO_RUNNER = "auto"  # host, plus the emulator for ARM targets once `edgeq emulator setup` has run


def resolve_runners(config: PipelineConfig, target: Target, progress: Progress | None = None) -> tuple[str, ...]:
    """Expand ``auto`` and de-duplicate; explicitly requested runners must be usable (checked before slow work)."""
    from edgeq.validate.runners import get_runner

    specs: list[str] = []
    for spec in config.validate_on:
        if spec != AUTO_RUNNER:
            runner = get_runner(spec, target)  # e.g. EmulatorError when the emulator is not set up
            getattr(runner, "preflight", lambda: None)()  # e.g. an unreachable ssh device, before slow work
            specs.append(spec)
            continue
        specs.append("host")
        if target.is_arm and target.default_runner == "emulator" and target.cpu.qemu_model:
            from edgeq.emulator.sysroot import is_ready

            if is_ready():
                specs.append("emulator")
            elif progress is not None:
                progress.stage(f"note: validating on the host only; run `edgeq emulator setup` to validate "
                               f"{target.name} on emulated {target.cpu.name} kernels")
    return tuple(dict.fromkeys(specs))


def prepare_output(output: Path, force: bool) -> Path:
    """Refuse an existing output unless forced; return a fresh temporary sibling to build into."""
    if output.exists() and not force:
        raise OutputExistsError(f"output folder {output} already exists", "pass --force to replace it, or pick another -o")
    if output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} exists and is not a folder", "pick another -o")
    parent = output.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.edgeq-tmp-", dir=parent))


def commit_output(tmp: Path, output: Path) -> None:
    """Atomically put ``tmp`` in place of ``output`` (rename; the old folder is removed only afterwards)."""
    old = None
    if output.exists():
        old = output.resolve().parent / f".{output.name}.edgeq-old-{os.getpid()}"
        os.rename(output, old)
    os.rename(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_data(config: PipelineConfig) -> tuple[Dataset, Dataset | None]:
    calib = load_dataset(config.calib)
    ev = load_dataset(config.eval) if config.eval else None
    return calib, ev


def export(config: PipelineConfig, progress: Progress | None = None) -> ExportResult:
    """Run the whole pipeline for one config. Raises an :class:`edgeq.errors.EdgeqError` on bad input."""
    progress = progress or Progress(enabled=False)
    target = load_target(config.target)
    for fmt in config.formats:
        get_backend(fmt)  # fail on an unavailable format before any slow work
    budget = config.budget.merged_over(target.validation)
    if config.search.mode != "off":
        from edgeq.search.search import check_budget_consistency

        check_budget_consistency(budget, config.search)  # contradictory budgets fail before any slow work
    runners = resolve_runners(config, target, progress)
    progress.stage(f"loading model {config.model}")
    source = load_source(config.model)
    calib_all, ev = _load_data(config)
    if ev is None:
        calib_all, ev = calib_all.split(config.eval_fraction, config.seed)
    progress.stage(f"capturing with torch.export ({len(calib_all)} calibration / {len(ev)} evaluation samples)")
    captured, calib = capture(source, calib_all)
    ev = check_against_signature(ev, captured.signature).head(config.max_eval_samples)
    output_names = output_names_for(captured)

    tmp = prepare_output(config.output, config.force)
    scratch = Path(tempfile.mkdtemp(prefix="edgeq-scratch-"))
    try:
        (tmp / VALIDATION_DIR).mkdir()
        ev.to_npz(tmp / INPUTS_REL)
        progress.stage("computing float reference outputs")
        ref, ref_kind = reference_outputs(captured, ev, output_names)
        import numpy as np

        np.savez(tmp / REFERENCE_REL, **ref)

        pass_log: list[dict[str, Any]] = []
        artifacts: list[Artifact] = []
        notes: dict[str, Any] = {}
        search_keys: dict[str, Any] = {}
        for fmt in config.formats:
            ctx = BuildContext(captured=captured, calib=calib, eval=ev, target=target, quant=config.quant,
                               workdir=tmp, scratch=scratch, progress=progress, output_names=output_names,
                               opset=config.opset, pass_log=pass_log, notes=notes)
            built = get_backend(fmt)(ctx)
            artifacts += built
            if fmt == "onnx":
                # The search may replace model.int8.onnx; it runs before the artifact passes so that what they
                # derive (.ort, usability analysis, budget check) describes the model that ships.
                search_keys.update(_search_onnx(config, budget, tmp, scratch, built, calib, target, progress))
            pctx = PassContext(target=target, fmt=fmt, workdir=tmp, quant=config.quant, calib=calib, eval=ev,
                               artifacts=artifacts, captured=captured, notes=notes)
            apply_stage("artifact", pctx, pass_log)
            for a in pctx.artifacts:
                if a not in artifacts:
                    artifacts.append(a)

        validate_artifacts(tmp, artifacts, INPUTS_REL, REFERENCE_REL, runners, target, budget, progress)
        from edgeq.search.integrate import run_pte_search

        search_keys.update(run_pte_search(config, budget, tmp, artifacts, captured, calib, ev, INPUTS_REL, REFERENCE_REL,
                                          runners, target, progress))

        m = new_manifest()
        m["source"] = {"ref": source.ref, "kind": source.kind, "sha256": source.sha256}
        m["target"] = target.summary()
        m["config"] = {"formats": list(config.formats), "quant": config.quant.to_dict(),
                       "eval_fraction": config.eval_fraction, "seed": config.seed, "opset": config.opset,
                       "max_eval_samples": config.max_eval_samples, "validate_on": list(runners),
                       "calib": str(config.calib), "eval": config.eval, "dynamic_batch": captured.dynamic_batch,
                       "search": config.search.to_dict()}
        m["budget"] = budget.to_dict()
        m["signature"] = {"inputs": [s.to_dict() for s in captured.signature],
                          "outputs": [_output_spec(n, ref[n], captured.dynamic_batch).to_dict() for n in output_names]}
        m["validation_data"] = {
            "inputs": {"path": INPUTS_REL, "sha256": sha256_file(tmp / INPUTS_REL)},
            "reference": {"path": REFERENCE_REL, "sha256": sha256_file(tmp / REFERENCE_REL), "kind": ref_kind},
            "samples": len(ev), "has_labels": ev.labels is not None,
            "source": config.eval or f"{config.calib} (held-out {config.eval_fraction:.0%} split, seed {config.seed})",
        }
        m["passes"] = pass_log
        m["artifacts"] = [a.to_dict() for a in artifacts]
        m["verdict"] = verdict(artifacts, pass_log)
        m.update(search_keys)  # optional keys: "search", "sensitivity", "sensitivity_pte"
        write_manifest(m, tmp)
        from edgeq.report import write_reports

        write_reports(m, tmp)
        commit_output(tmp, config.output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.stage(f"wrote {config.output}")
    return ExportResult(config.output, m)


def _search_onnx(config: PipelineConfig, budget: Budget, tmp: Path, scratch: Path, built: list[Artifact],
                 calib: Dataset, target: Target, progress: Progress) -> dict[str, Any]:
    """Host-check the INT8 ONNX model against the budget; search when it misses. Returns manifest keys.

    The check's host validation is dropped afterwards: every artifact is validated once, on every runner,
    after the artifact passes.
    """
    from edgeq.search.integrate import run_export_search, should_search

    if config.search.mode == "off" or (budget.is_empty() and config.search.max_size_ratio is None):
        return {}
    candidates = [a for a in built if a.role == "candidate"]
    validate_artifacts(tmp, candidates, INPUTS_REL, REFERENCE_REL, ("host",), target, budget, Progress(False))
    keys: dict[str, Any] = {}
    if should_search(config, budget, built):
        keys = run_export_search(config, budget, tmp, scratch, built, calib, INPUTS_REL, REFERENCE_REL, (), target,
                                 progress)
    for a in candidates:
        a.validations = []
    return keys


def _output_spec(name: str, arr: Any, dynamic: bool) -> TensorSpec:
    shape: tuple[int | str, ...] = (("batch" if dynamic else 1), *arr.shape[1:])
    return TensorSpec(name, str(arr.dtype), shape)


def export_model(model: str, calib: str, output: str | Path, **kwargs: Any) -> ExportResult:
    """Convenience wrapper: ``edgeq.export("pkg.mod:factory", "calib.npz", "out", target="raspberry-pi-5")``."""
    cfg_fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = set(kwargs) - cfg_fields - {"progress"}
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))}", f"valid: {', '.join(sorted(cfg_fields))}")
    progress = kwargs.pop("progress", None)
    if isinstance(kwargs.get("budget"), dict):
        kwargs["budget"] = Budget(**kwargs["budget"])
    if isinstance(kwargs.get("formats"), str):
        kwargs["formats"] = tuple(kwargs["formats"].split(","))
    return export(PipelineConfig(model=model, calib=str(calib), output=Path(output), **kwargs), progress)
