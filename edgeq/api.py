"""``export``: source -> capture -> per-format build + target passes -> validate -> manifest + reports.

Everything is written to a temporary sibling of the output folder and renamed into place at the end, so an
error or Ctrl-C never leaves a partial output folder behind.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from edgeq.backends.base import get_backend
from edgeq.capture import capture
from edgeq.config import Budget, PipelineConfig, QuantOptions, config_to_dict
from edgeq.data import Dataset, check_against_signature, load_dataset
from edgeq.errors import TargetError, UsageError
from edgeq.explain.run import ExplainInputs, explain_export
from edgeq.hashing import sha256_file
from edgeq.integrity import seal
from edgeq.llm.api import export_llm
from edgeq.llm.config import LlmConfig
from edgeq.manifest import Artifact, new_manifest, write_manifest
from edgeq.outdir import (
    INPUTS_REL,
    REFERENCE_REL,
    VALIDATION_DIR,
    commit_output,
    discard_output,
    make_scratch,
    prepare_output,
)
from edgeq.pipeline.pipeline import Pipeline, build_format
from edgeq.pipeline.selection import SelectContext, select
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.reference import output_names_for, reference_outputs
from edgeq.signature import TensorSpec
from edgeq.source import load_source
from edgeq.targets import load_target, with_runner_timeout
from edgeq.targetspec import Target
from edgeq.validate.fleet import is_board_spec
from edgeq.validate.fleet_run import split_runners
from edgeq.validate.orchestrate import ValidationRequest, validate_artifacts, verdict


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


def _load_data(config: PipelineConfig, input_names: list[str]) -> tuple[Dataset, Dataset | None]:
    calib = load_dataset(config.calib, config.preprocess, input_names)
    ev = load_dataset(config.eval, config.preprocess, input_names) if config.eval else None
    return calib, ev


def export(config: PipelineConfig, progress: Progress | None = None) -> ExportResult:
    """Run the whole pipeline for one config. Raises an :class:`edgeq.errors.EdgeqError` on bad input."""
    progress = progress or Progress(enabled=False)
    target = with_runner_timeout(load_target(config.target), config.runner_timeout_s)
    if config.target_sha256 is not None and target.sha256 != config.target_sha256:
        raise TargetError(f"target profile {target.path} changed since the recorded export "
                          f"(sha256 {target.sha256[:12]}… vs {config.target_sha256[:12]}…)",
                          "restore the profile to rebuild the same artifacts, or export with the new one without "
                          "the recorded configuration")
    backends = [get_backend(fmt) for fmt in config.formats]  # an unavailable format fails before slow work
    pipeline = Pipeline.for_target(target)
    budget = config.budget.merged_over(target.validation)
    if config.search.mode != "off":
        from edgeq.search.search import check_budget_consistency

        check_budget_consistency(budget, config.search)  # contradictory budgets fail before any slow work
    local_specs, boards = split_runners(config.validate_on, target, config.fleet)  # boards run in parallel
    runners = resolve_runners(dataclasses.replace(config, validate_on=local_specs), target, progress)
    if boards is not None:
        boards.preflight(progress)  # fewer than --min-boards reachable: fail before any slow work
    progress.stage(f"loading model {config.model}")
    source = load_source(config.model, config.trust_pickle)
    calib_all, ev = _load_data(config, source.input_names)
    if ev is None:
        calib_all, ev = calib_all.split(config.eval_fraction, config.seed)
    float_source, compression = source, dict[str, Any]()
    if config.compress.enabled:
        from edgeq.compress.hook import compress_source

        source, compression = compress_source(source, config.compress, calib_all, ev, target, progress,
                                              per_channel=config.quant.per_channel)
    outliers: dict[str, Any] = {}
    prepared_source = None
    from edgeq.prepare import prepare_source, should_prepare

    # not on a QAT model: it ships its trained ranges, which a re-scaled copy would no longer match
    if should_prepare(config, source) and source.qat is None:
        prepared_source, outliers = prepare_source(source, calib_all, progress, explicit=config.outliers == "on",
                                                      rounding=config.rounding)
    progress.stage(f"capturing with torch.export ({len(calib_all)} calibration / {len(ev)} evaluation samples)")
    captured, calib = capture(source, calib_all)
    # INT8 is built from the prepared copy in every format; float artifacts and the reference stay the model's own.
    quant_captured = capture(prepared_source, calib_all)[0] if prepared_source is not None else captured
    ev = check_against_signature(ev, captured.signature).head(config.max_eval_samples)
    output_names = output_names_for(captured)
    first = {b.name: _first_scheme(config, outliers, b.name) for b in backends}
    states = [BuildState(target=target, fmt=b.name, workdir=config.output, quant=first[b.name], calib=calib, eval=ev,
                         captured=quant_captured, float_captured=captured if prepared_source is not None else None,
                         output_names=tuple(output_names), opset=config.opset, progress=progress)
              for b in backends]
    for backend, state in zip(backends, states, strict=True):
        backend.preflight(state)  # e.g. .pte refuses an ONNX source or node exclusions, before any slow work

    tmp = prepare_output(config.output, config.force)
    scratch = make_scratch()
    try:
        (tmp / VALIDATION_DIR).mkdir()
        ev.to_npz(tmp / INPUTS_REL)
        progress.stage("computing float reference outputs")
        # The uncompressed model is the reference, so the verdict covers compression + quantization together.
        ref, ref_kind = reference_outputs(dataclasses.replace(captured, source=float_source), ev, output_names)
        import numpy as np

        np.savez(tmp / REFERENCE_REL, **cast("dict[str, Any]", ref))  # numpy types **kwds as if allow_pickle were among them

        pass_log: list[dict[str, Any]] = []
        artifacts: list[Artifact] = []
        search_keys: dict[str, Any] = {}
        resolved_quant: dict[str, Any] = {}
        select_ctx = SelectContext(config, budget, calib, progress, qat=source.qat is not None,
                                   linear_ranking=tuple(_linear_ranking(outliers)),
                                   first_dynamic={f: q.mode == "dynamic" and config.quant.mode == "static"
                                                  for f, q in first.items()})
        for backend, state in zip(backends, states, strict=True):
            state = build_format(backend, pipeline, state.updated(workdir=tmp, scratch=scratch), pass_log)
            resolved_quant[backend.name] = state.quant.to_dict()  # after the target's scheme and the user's options
            built = list(state.artifacts)
            # SELECT: the search may replace the format's INT8 model (the grid adds its variants); it runs before
            # the artifact stages so that what they derive (.ort, usability, 16 KB alignment, budget check)
            # describes the models that ship.
            search_keys.update(select(select_ctx, state, built))
            artifacts += built
            # Emitters and Checks see every artifact built so far (each filters by format).
            state = pipeline.run_phase("artifact", state.updated(artifacts=tuple(artifacts)), pass_log)
            artifacts += [a for a in state.artifacts if a not in artifacts]

        validate_artifacts(ValidationRequest(tmp, INPUTS_REL, REFERENCE_REL, runners, target, budget), artifacts,
                           progress)
        if boards is not None:  # the boards validate the artifacts that ship (the SELECT phase ran before)
            validate_artifacts(ValidationRequest(tmp, INPUTS_REL, REFERENCE_REL, (), target, budget, fleet=boards),
                               artifacts, progress)
        prediction = outliers.get("scheme_prediction")
        for key in ("search", "search_pte"):  # which scheme each search tried first, and why
            if prediction and key in search_keys:
                search_keys[key]["scheme_prediction"] = prediction

        m = new_manifest()
        m["source"] = {"ref": source.ref, "kind": source.kind, "sha256": source.sha256}
        m["target"] = target.summary()
        m["config"] = {"recorded": config_to_dict(config), "resolved_quant": resolved_quant,
                       "formats": list(config.formats), "quant": config.quant.to_dict(),
                       "eval_fraction": config.eval_fraction, "seed": config.seed, "opset": config.opset,
                       "max_eval_samples": config.max_eval_samples,
                       "validate_on": [*runners, *(s for s in config.validate_on if is_board_spec(s))],
                       "calib": str(config.calib), "eval": config.eval, "dynamic_batch": captured.dynamic_batch,
                       "static_batch_reason": captured.static_batch_reason,
                       "search": config.search.to_dict(), "compress": config.compress.to_dict()}
        m["budget"] = budget.to_dict()
        m["signature"] = {"inputs": [s.to_dict() for s in captured.signature],
                          "outputs": [_output_spec(n, ref[n], captured.dynamic_batch).to_dict() for n in output_names]}
        if config.preprocess is not None:  # image-folder data: apps must preprocess exactly this way
            m["config"]["preprocess"] = config.preprocess.to_dict()
            for spec in m["signature"]["inputs"]:
                spec["preprocessing"] = config.preprocess.to_dict()
                spec["layout"] = config.preprocess.layout
        m["validation_data"] = {
            "inputs": {"path": INPUTS_REL, "sha256": sha256_file(tmp / INPUTS_REL)},
            "reference": {"path": REFERENCE_REL, "sha256": sha256_file(tmp / REFERENCE_REL), "kind": ref_kind},
            "samples": len(ev), "has_labels": ev.labels is not None,
            "source": config.eval or f"{config.calib} (held-out {config.eval_fraction:.0%} split, seed {config.seed})",
        }
        m["passes"] = pass_log
        m["artifacts"] = [a.to_dict() for a in artifacts]
        if boards is not None:
            m["fleet"] = boards.record()
        m["verdict"] = verdict(artifacts, pass_log, m.get("fleet"))
        m.update(search_keys)  # optional keys: "search", "sensitivity", "sensitivity_pte"
        # where the error and the time come from: per layer, per operator (after the searches: what ships)
        m["explain"] = explain_export(ExplainInputs(tmp, scratch, tuple(artifacts), INPUTS_REL, REFERENCE_REL,
                                                    quant_captured, calib, ev, resolved_quant, target, search_keys),
                                      progress)
        if outliers:  # what the outlier-aware preparation applied (both formats' INT8 models are built from it)
            m["outliers"] = outliers
        if compression:
            from edgeq.compress.hook import effect_summary

            m["compression"] = {**compression, "artifacts": effect_summary(tmp, artifacts)}
        write_manifest(m, tmp)
        from edgeq.report import write_reports

        write_reports(m, tmp)
        write_manifest(seal(m, tmp), tmp)  # hash the reports and any other file, so check can trust them
        commit_output(tmp, config.output)
    except BaseException:
        discard_output(tmp, config.output)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.stage(f"wrote {config.output}")
    return ExportResult(config.output, m)


def _first_scheme(config: PipelineConfig, outliers: dict[str, Any], fmt: str) -> QuantOptions:
    """The first INT8 model of ``fmt``: dynamic when the preparation's simulation predicts it beats static
    (``outliers["scheme_prediction"]``), so a transformer's hopeless static model is never built and lowered
    (MiniLM: ≈ 14 min for the static ``.pte`` alone); the target's scheme otherwise. Only when the search may run
    (with ``--no-search`` the user gets the scheme asked for) and the user did not pick a mode explicitly."""
    pick = (outliers.get("scheme_prediction") or {}).get("pick", {}).get(fmt)
    if pick != "dynamic" or config.search.mode in ("off", "grid") or config.quant.mode != "static":
        return config.quant
    # the dynamic search move's settings: per-channel weights, full-range INT8 (the scale is per run)
    return dataclasses.replace(config.quant, mode="dynamic",
                               per_channel=True if config.quant.per_channel is None else config.quant.per_channel,
                               reduce_range=False if config.quant.reduce_range is None else config.quant.reduce_range)


def _linear_ranking(outliers: dict[str, Any]) -> list[str]:
    """Linear modules, most sensitive first (the preparation's sensitivity pass), for the search's linear moves;
    empty for convolution-dominated models (their moves are the static ones)."""
    if not outliers.get("linear_dominated"):
        return []
    return [r["module"] for r in outliers.get("linear_sensitivity", []) if r.get("share", 0.0) > 0]


def _export_text_generation(model: str, calib: str, output: str | Path, kwargs: dict[str, Any]) -> ExportResult:
    fields = {f.name for f in dataclasses.fields(LlmConfig)} - {"model", "output", "calib_text", "eval_text"}
    unknown = set(kwargs) - fields - {"progress", "eval"}
    if unknown:
        raise UsageError(f"unknown text-generation option(s) {', '.join(sorted(unknown))}",
                         f"valid: eval, progress, {', '.join(sorted(fields))}")
    progress = kwargs.pop("progress", None)
    ev = kwargs.pop("eval", None)
    if isinstance(kwargs.get("formats"), str):
        kwargs["formats"] = tuple(f.strip() for f in kwargs["formats"].split(",") if f.strip())
    cfg = LlmConfig(model=model, output=Path(output), calib_text=Path(calib),
                    eval_text=Path(ev) if ev is not None else None, **kwargs)
    result = export_llm(cfg, progress)
    return ExportResult(result.output, result.manifest)


def _output_spec(name: str, arr: Any, dynamic: bool) -> TensorSpec:
    shape: tuple[int | str, ...] = (("batch" if dynamic else 1), *arr.shape[1:])
    return TensorSpec(name, str(arr.dtype), shape)


def export_model(model: str, calib: str, output: str | Path, **kwargs: Any) -> ExportResult:
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
    progress = kwargs.pop("progress", None)
    if isinstance(kwargs.get("budget"), dict):
        kwargs["budget"] = Budget(**kwargs["budget"])
    if isinstance(kwargs.get("compress"), str):  # the --compress spelling, e.g. "prune:0.3,qat"
        from edgeq.compress.spec import CompressOptions

        kwargs["compress"] = CompressOptions.from_spec(kwargs["compress"], seed=kwargs.get("seed", 0))
    if isinstance(kwargs.get("formats"), str):
        kwargs["formats"] = tuple(kwargs["formats"].split(","))
    return export(PipelineConfig(model=model, calib=str(calib), output=Path(output), **kwargs), progress)
