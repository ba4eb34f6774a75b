"""``export``: source -> capture -> per-format build + target passes -> validate -> manifest + reports.

Everything is written to a temporary sibling of the output folder and renamed into place at the end, so an
error or Ctrl-C never leaves a partial output folder behind.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.backends.base import FormatBackend, get_backend
from edgeq.compress.hook import effect_summary
from edgeq.compress.spec import CompressOptions
from edgeq.config import Budget, PipelineConfig
from edgeq.emulator.sysroot import is_ready
from edgeq.errors import TargetError, UsageError
from edgeq.explain.run import ExplainInputs, explain_export
from edgeq.export_inputs import ExportModel, first_scheme, linear_ranking, load_model, write_validation_data
from edgeq.export_manifest import ExportRecord, compose_manifest
from edgeq.integrity import seal
from edgeq.jsontypes import (
    JSONObject,
    as_object,
    get_object,
    get_objects,
    get_strs,
)
from edgeq.llm.api import export_llm
from edgeq.llm.config import LlmConfig
from edgeq.manifest import Artifact, Manifest, write_manifest
from edgeq.outdir import (
    INPUTS_REL,
    REFERENCE_REL,
    commit_output,
    discard_output,
    make_scratch,
    prepare_output,
)
from edgeq.pipeline.pipeline import Pipeline, build_format
from edgeq.pipeline.selection import SelectContext, select
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.report import write_reports
from edgeq.search.search import check_budget_consistency
from edgeq.targets import load_target, with_runner_timeout
from edgeq.targetspec import Target
from edgeq.timing import PhaseClock
from edgeq.validate.fleet_run import FleetRun, split_runners
from edgeq.validate.orchestrate import ValidationRequest, validate_artifacts
from edgeq.validate.runners import get_runner


@dataclass
class ExportResult:
    """What ``edgeq.export`` returns: the output folder, the manifest and convenient views of it."""

    output: Path
    manifest: JSONObject

    @property
    def passed(self) -> bool:
        return bool(get_object(self.manifest, "verdict")["passed"])

    @property
    def failures(self) -> list[str]:
        return get_strs(get_object(self.manifest, "verdict"), "failures")

    @property
    def artifacts(self) -> list[Artifact]:
        return [Artifact.from_dict(a) for a in get_objects(self.manifest, "artifacts")]

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
    specs: list[str] = []
    for spec in config.validate_on:
        if spec != AUTO_RUNNER:
            runner = get_runner(spec, target)  # e.g. EmulatorError when the emulator is not set up
            getattr(runner, "preflight", lambda: None)()  # e.g. an unreachable ssh device, before slow work
            specs.append(spec)
            continue
        specs.append("host")
        if target.is_arm and target.default_runner == "emulator" and target.cpu.qemu_model:
            if is_ready():
                specs.append("emulator")
            elif progress is not None:
                progress.stage(f"note: validating on the host only; run `edgeq emulator setup` to validate "
                               f"{target.name} on emulated {target.cpu.name} kernels")
    return tuple(dict.fromkeys(specs))


@dataclass(frozen=True)
class _Plan:
    """What an export decides before any slow work: the target, the formats, the budget and the runners."""

    target: Target
    backends: tuple[FormatBackend, ...]
    pipeline: Pipeline
    budget: Budget
    runners: tuple[str, ...]
    boards: FleetRun | None  # SSH boards validated in parallel, after the local runners


@dataclass
class _Built:
    """What the format builds produced, in build order."""

    artifacts: list[Artifact] = field(default_factory=list)
    pass_log: list[JSONObject] = field(default_factory=list)
    search_keys: JSONObject = field(default_factory=dict)  # "search", "sensitivity", "sensitivity_pte", ...
    resolved_quant: dict[str, JSONObject] = field(default_factory=dict)


def export(config: PipelineConfig, progress: Progress | None = None) -> ExportResult:
    """Run the whole pipeline for one config. Raises an :class:`edgeq.errors.EdgeqError` on bad input."""
    progress = progress or Progress(enabled=False)
    clock = PhaseClock()
    plan = _plan(config, progress)
    with clock.phase("capture + preparation"):
        model = load_model(config, plan.target, progress)
    first = {b.name: first_scheme(config, model.outliers, b.name) for b in plan.backends}
    states = [BuildState(target=plan.target, fmt=b.name, workdir=config.output, quant=first[b.name],
                         calib=model.calib, eval=model.ev, captured=model.quant_captured,
                         float_captured=model.captured if model.prepared else None,
                         output_names=model.output_names, opset=config.opset, progress=progress)
              for b in plan.backends]
    for backend, state in zip(plan.backends, states, strict=True):
        backend.preflight(state)  # e.g. .pte refuses an ONNX source or node exclusions, before any slow work

    tmp = prepare_output(config.output, config.force)
    scratch = make_scratch()
    try:
        ref, ref_kind = write_validation_data(tmp, model, progress)
        select_ctx = SelectContext(config, plan.budget, model.calib, progress, qat=model.source.qat is not None,
                                   linear_ranking=tuple(linear_ranking(model.outliers)),
                                   first_dynamic={f: q.mode == "dynamic" and config.quant.mode == "static"
                                                  for f, q in first.items()})
        built = _build_formats(plan, select_ctx, states, (tmp, scratch), clock)
        with clock.phase("validate"):
            _validate(plan, tmp, built.artifacts, progress)
        prediction = model.outliers.get("scheme_prediction")
        for key in [k for k in ("search", "search_pte") if prediction and k in built.search_keys]:
            as_object(built.search_keys[key], key)["scheme_prediction"] = prediction  # what it tried first, and why
        m = compose_manifest(ExportRecord(config, plan.target, plan.budget, plan.runners, model.source,
                                          model.captured, model.ev, ref, ref_kind, model.output_names,
                                          built.resolved_quant, built.pass_log, built.artifacts,
                                          plan.boards.record() if plan.boards is not None else None), tmp)
        m = m.with_records(built.search_keys)  # optional records: "search", "sensitivity", "sensitivity_pte"
        # where the error and the time come from: per layer, per operator (after the searches: what ships)
        with clock.phase("explain"):
            m = dataclasses.replace(m, explain=(
                explain_export(ExplainInputs(tmp, scratch, tuple(built.artifacts), INPUTS_REL, REFERENCE_REL,
                                             model.quant_captured, model.calib, model.ev, plan.target,
                                             searches=built.search_keys), progress)
                if config.explain else {"skipped": "--no-explain"}))
        m = _finish(m, tmp, model, built.artifacts, clock)
        commit_output(tmp, config.output)
    except BaseException:
        discard_output(tmp, config.output)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.stage(f"wrote {config.output}")
    return ExportResult(config.output, m.to_json())


def _plan(config: PipelineConfig, progress: Progress) -> _Plan:
    """The target, formats, budget and runners; everything that can fail fast fails here."""
    target = with_runner_timeout(load_target(config.target), config.runner_timeout_s)
    if config.target_sha256 is not None and target.sha256 != config.target_sha256:
        raise TargetError(f"target profile {target.path} changed since the recorded export "
                          f"(sha256 {target.sha256[:12]}… vs {config.target_sha256[:12]}…)",
                          "restore the profile to rebuild the same artifacts, or export with the new one without "
                          "the recorded configuration")
    backends = tuple(get_backend(fmt) for fmt in config.formats)  # an unavailable format fails before slow work
    budget = config.budget.merged_over(target.validation)
    if config.search.mode != "off":
        check_budget_consistency(budget, config.search)  # contradictory budgets fail before any slow work
    local_specs, boards = split_runners(config.validate_on, target, config.fleet)  # boards run in parallel
    runners = resolve_runners(dataclasses.replace(config, validate_on=local_specs), target, progress)
    if boards is not None:
        boards.preflight(progress)  # fewer than --min-boards reachable: fail before any slow work
    return _Plan(target, backends, Pipeline.for_target(target), budget, runners, boards)


def _build_formats(plan: _Plan, select_ctx: SelectContext, states: list[BuildState], dirs: tuple[Path, Path],
                   clock: PhaseClock) -> _Built:
    """Build every format: its stages, SELECT, then the artifact stages over everything built so far (``dirs``:
    the output's temporary folder, the scratch folder)."""
    built = _Built()
    tmp, scratch = dirs
    for backend, state in zip(plan.backends, states, strict=True):
        with clock.phase(f"build {backend.name}"):
            state = build_format(backend, plan.pipeline, state.updated(workdir=tmp, scratch=scratch), built.pass_log)
        built.resolved_quant[backend.name] = state.quant.to_dict()  # after the target's scheme and the user's options
        fmt_built = list(state.artifacts)
        # SELECT: the search may replace the format's INT8 model (the grid adds its variants); it runs before
        # the artifact stages so that what they derive (.ort, usability, 16 KB alignment, budget check)
        # describes the models that ship.
        with clock.phase(f"search {backend.name}"):
            built.search_keys.update(select(select_ctx, state, fmt_built))
        built.artifacts += fmt_built
        # Emitters and Checks see every artifact built so far (each filters by format).
        with clock.phase(f"artifact stages {backend.name}"):
            state = plan.pipeline.run_phase("artifact", state.updated(artifacts=tuple(built.artifacts)),
                                            built.pass_log)
        built.artifacts = list(state.artifacts)  # what the emitters added, and each artifact as the checks noted it
    return built


def _validate(plan: _Plan, tmp: Path, artifacts: list[Artifact], progress: Progress) -> None:
    validate_artifacts(ValidationRequest(tmp, INPUTS_REL, REFERENCE_REL, plan.runners, plan.target, plan.budget),
                       artifacts, progress)
    if plan.boards is not None:  # the boards validate the artifacts that ship (the SELECT phase ran before)
        validate_artifacts(ValidationRequest(tmp, INPUTS_REL, REFERENCE_REL, (), plan.target, plan.budget,
                                             fleet=plan.boards), artifacts, progress)


def _finish(m: Manifest, tmp: Path, model: ExportModel, artifacts: list[Artifact], clock: PhaseClock) -> Manifest:
    """The manifest's last keys (timing last: it reads the preparation's record), the reports, the seal."""
    m = dataclasses.replace(
        m, outliers=model.outliers or None,  # what the outlier-aware preparation applied (both formats' INT8 models)
        compression={**model.compression, "artifacts": effect_summary(tmp, artifacts)} if model.compression else None)
    m = write_manifest(dataclasses.replace(m, timing=clock.record(m.to_json())), tmp)
    write_reports(m.to_json(), tmp)
    return write_manifest(seal(m, tmp), tmp)  # hash the reports and any other file, so check can trust them


def _pop_progress(kwargs: dict[str, object]) -> Progress | None:
    progress = kwargs.pop("progress", None)
    if progress is not None and not isinstance(progress, Progress):
        raise UsageError(f"progress must be an edgeq.progress.Progress, got {type(progress).__name__}")
    return progress


def _export_text_generation(model: str, calib: str, output: str | Path, kwargs: dict[str, object]) -> ExportResult:
    fields = {f.name for f in dataclasses.fields(LlmConfig)} - {"model", "output", "calib_text", "eval_text"}
    unknown = set(kwargs) - fields - {"progress", "eval"}
    if unknown:
        raise UsageError(f"unknown text-generation option(s) {', '.join(sorted(unknown))}",
                         f"valid: eval, progress, {', '.join(sorted(fields))}")
    progress = _pop_progress(kwargs)
    ev = kwargs.pop("eval", None)
    if ev is not None and not isinstance(ev, str | Path):
        raise UsageError(f"eval must be a path to the evaluation text, got {type(ev).__name__}")
    formats = kwargs.get("formats")
    if isinstance(formats, str):
        kwargs["formats"] = tuple(f.strip() for f in formats.split(",") if f.strip())
    make: Callable[..., LlmConfig] = LlmConfig  # the user's keywords: LlmConfig checks its own values
    cfg = make(model=model, output=Path(output), calib_text=Path(calib),
               eval_text=Path(ev) if ev is not None else None, **kwargs)
    result = export_llm(cfg, progress)
    return ExportResult(result.output, result.manifest)


def export_model(model: str, calib: str, output: str | Path, **kwargs: object) -> ExportResult:
    """Convenience wrapper: ``edgeq.export("pkg.mod:factory", "calib.npz", "out", target="raspberry-pi-5")``.

    ``task="text-generation"`` exports a causal LM (an HF folder or a ``.gguf``) with ``calib`` as the calibration
    text, ``eval`` the evaluation text and the :class:`edgeq.llm.config.LlmConfig` options (``target``,
    ``formats``, ``max_ppl_increase``, ``seq_len``, ...), like ``edgeq export --task text-generation``."""
    if kwargs.pop("task", "tensor") == "text-generation":
        return _export_text_generation(model, calib, output, kwargs)
    cfg_fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = set(kwargs) - cfg_fields - {"progress"}
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))}", f"valid: {', '.join(sorted(cfg_fields))}")
    progress = _pop_progress(kwargs)
    budget, compress, formats = kwargs.get("budget"), kwargs.get("compress"), kwargs.get("formats")
    if isinstance(budget, dict):
        kwargs["budget"] = Budget(**budget)
    if isinstance(compress, str):  # the --compress spelling, e.g. "prune:0.3,qat"
        seed = kwargs.get("seed", 0)
        if not isinstance(seed, int):
            raise UsageError(f"seed must be an integer, got {type(seed).__name__}")
        kwargs["compress"] = CompressOptions.from_spec(compress, seed=seed)
    if isinstance(formats, str):
        kwargs["formats"] = tuple(formats.split(","))
    make: Callable[..., PipelineConfig] = PipelineConfig  # the user's keywords: PipelineConfig checks its own values
    return export(make(model=model, calib=str(calib), output=Path(output), **kwargs), progress)
