"""Build one variant, measure a shipped artifact on the eval text (perplexity, agreement, greedy agreement,
token-by-token decoding, tokens/s) and write the manifest in the shape of the other validations."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.hashing import sha256_file
from edgeq.jsontypes import JSONObject, get_object_or_none, get_objects, get_strs
from edgeq.llm.build import LlmBuildInputs, get_llm_builder, quantization_record
from edgeq.llm.config import LlmConfig, Variant
from edgeq.llm.emulate import emulated_speed, unsupported_ops
from edgeq.llm.metrics import WindowScores, compare, greedy, greedy_agreement, score, speed
from edgeq.llm.onnx_export import folder_bytes
from edgeq.llm.pte_delegation import DELEGATION_EXTENDED_OPS, delegation_of, extended_ops_for
from edgeq.llm.pte_export import PteLowering, custom_ops
from edgeq.llm.runners import open_runner
from edgeq.llm.source import LoadedLM
from edgeq.llm.target_checks import KvShape, backend_config, items_from_manifest, run_checks
from edgeq.llm.text import bos_id
from edgeq.manifest import FileRef, Manifest, Source, TargetInfo, Tool, ValidationData, write_manifest
from edgeq.progress import Progress
from edgeq.select.evaluation import evaluate_perplexity
from edgeq.select.verdict import ArtifactCheck
from edgeq.select.verdict import verdict as select_verdict
from edgeq.targets import load_target

STEPWISE_WINDOWS = 2  # windows decoded one token at a time to prove the KV cache matches the full pass


@dataclass
class Context:
    cfg: LlmConfig
    lm: LoadedLM
    hf_folder: Path | None
    work: Path
    fbytes: int
    calib_scores: WindowScores
    eval_scores: WindowScores
    ref_greedy: list[np.ndarray]
    prompts: list[np.ndarray]
    limit: float
    calib_windows: np.ndarray
    eval_windows: np.ndarray


def build(ctx: Context, v: Variant) -> Path:
    """Build V's recipe through its format's LM builder (:mod:`edgeq.llm.build`) into the work folder; the
    artifact's location (ONNX: its folder; ``.pte``: the file)."""
    out = ctx.work / (v.name if v.format == "onnx" else f"{v.name}.pte")
    get_llm_builder(v.format).build(build_inputs(ctx), v.to_recipe(), out)
    return out


def build_inputs(ctx: Context) -> LlmBuildInputs:
    """The run's LM build inputs: the loaded model and its HF folder, the calibration windows, the work cache, the
    ``.pte``'s KV-cache length and lowering (the run's delegation and program, the target's segment layout)."""
    return LlmBuildInputs(ctx.lm, ctx.hf_folder, ctx.calib_windows, ctx.work / "cache", ctx.cfg.max_context,
                          pte_lowering(ctx))


def pte_lowering(ctx: Context) -> PteLowering:
    """The run's ``.pte`` lowering: its delegation and program options, the target's segment layout."""
    return PteLowering(extended_ops=DELEGATION_EXTENDED_OPS[ctx.cfg.pte_delegation],
                       program=None if ctx.cfg.pte_program == "auto" else ctx.cfg.pte_program,
                       segment_alignment=backend_config(load_target(ctx.cfg.target)).segment_alignment)


def artifact_bytes(path: Path, fmt: str) -> int:
    if fmt == "onnx":
        return folder_bytes(path)
    return path.stat().st_size


def finalize(ctx: Context, v: Variant, path: Path, out: Path, pick: bool, progress: Progress) -> JSONObject:
    """Move the artifact into OUT, measure it on the eval windows and return its manifest entry."""
    if v.format == "onnx":
        dest = out / "onnx" / v.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)
        main = dest / "model.onnx"
    else:
        dest = out / "pte" / f"{v.name}.pte"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)
        main = dest
    runner = open_runner(dest, v.format)
    with progress.bar(len(ctx.eval_windows), f"{v.name} perplexity (eval text)", unit="window") as bar:
        got = score(runner, ctx.eval_windows, bar=bar)
    met = compare(ctx.eval_scores, got)
    metrics: JSONObject = {**met}
    metrics["greedy_agreement"] = round(greedy_agreement(
        ctx.ref_greedy, [greedy(runner, p, ctx.cfg.greedy_tokens) for p in ctx.prompts]), 4)
    metrics["greedy_tokens"] = ctx.cfg.greedy_tokens
    k = min(STEPWISE_WINDOWS, len(ctx.eval_windows))
    full = WindowScores(got.nll[:k], got.argmax[:k])
    step = score(runner, ctx.eval_windows[:k], stepwise=True)
    metrics["stepwise_ppl"] = round(step.ppl, 4)
    metrics["stepwise_vs_full_ppl_rel_diff"] = float(f"{abs(step.ppl / full.ppl - 1):.2e}")
    fast = speed(runner, ctx.eval_windows[0])
    metrics.update(fast)
    size = artifact_bytes(dest, v.format)
    metrics["size_ratio"] = round(size / ctx.fbytes, 4)
    ev = evaluate_perplexity(met, ctx.limit)  # the budget check: the one evaluator, on the eval windows
    progress.stage(f"{v.name}: eval PPL x{met['ppl_ratio']:.3f}, top-1 agreement {met['top1_agreement']:.1%}, "
                   f"{fast['decode_tokens_per_s']:.0f} decode tokens/s on the host")
    validation: JSONObject = {"runner": "host", "machine": platform.machine(), "cpu_model": platform.processor() or "host",
                  "features": [], "emulated": False, "metrics": metrics,
                  "budget_check": {"max_ppl_increase_pct": ctx.cfg.max_ppl_increase, "ppl_ratio": met["ppl_ratio"],
                                   "passed": ev.passed, "failures": list(ev.failures)},
                  "latency_ms": fast["decode_ms_per_token"], "latency_kind": "decode-token-median",
                  "runtime": "onnxruntime" if v.format == "onnx" else "executorch-pybind"}
    validations = [validation]
    # the llama:: ops the .pte calls (read once: the emulation and the manifest both need them)
    ops = custom_ops(dest) if v.format == "pte" else []
    for target in _emulated_targets(ctx, v, ops, progress):
        progress.stage(f"{v.name}: decode speed on emulated {target} (qemu; not device speed)")
        emu = emulated_speed(dest, v.format, target, ctx.prompts[0], ctx.work / "emulator")
        # speed only: perplexity and agreement are gated on the host run above
        emu["budget_check"] = {"passed": True, "failures": [], "scope": "speed only, not gated"}
        validations.append(emu)
    rel = main.relative_to(out)
    details: JSONObject = {"pick": pick, "folder": str(dest.relative_to(out)), "task": "text-generation"}
    if v.format == "pte":
        # what a runtime must link to load it: ExecuTorch's LLM runner has the llama:: custom ops
        details["pte_program"] = program = "custom-sdpa" if ops else "static-cache"
        details["pte_delegation"] = delegation_of(v, extended_ops_for(pte_lowering(ctx).extended_ops, program))
        details["custom_ops"] = ops
    return {"name": v.name, "path": str(rel), "format": v.format, "precision": f"int{v.bits}-weights",
            "role": "candidate", "bytes": size, "sha256": sha256_file(main),
            "quantization": quantization_record(v), "details": details,
            "validations": validations}


def _emulated_targets(ctx: Context, v: Variant, called: list[str], progress: Progress) -> tuple[str, ...]:
    """The targets to emulate this artifact on (CALLED: the ``llama::`` ops a ``.pte`` calls). The emulated C++
    runner compiles in ExecuTorch's ``llama::`` kernels, so both ``.pte`` programs are measured; a ``.pte`` calling
    some other ``llama::`` op (none of edgeq's programs does) is skipped, and says so, rather than failing the
    export after the lowering."""
    if v.format != "pte" or not ctx.cfg.emulate:
        return ctx.cfg.emulate
    if ops := unsupported_ops(called):
        progress.stage(f"{v.name}: not emulated: it calls {', '.join(ops)}, which the emulated C++ runner has no "
                       "kernels for (export with --pte-program static-cache to measure a .pte on the emulator)")
        return ()
    return ctx.cfg.emulate


def write(ctx: Context, out: Path, artifacts: list[JSONObject], formats: dict[str, JSONObject], calib: np.ndarray,
          evalw: np.ndarray) -> Manifest:
    vd = out / "validation"
    vd.mkdir(parents=True, exist_ok=True)
    np.savez(vd / "inputs.npz", eval_windows=evalw)
    np.savez(vd / "reference.npz", nll=ctx.eval_scores.nll, argmax=ctx.eval_scores.argmax)
    tool = Tool.now()
    target = load_target(ctx.cfg.target)
    passes = run_checks(target, out, items_from_manifest(artifacts), KvShape.of(ctx.lm.model.config),
                        ctx.cfg.max_context)
    signature: JSONObject = {
        "task": "text-generation",
        "pte": {"inputs": ["tokens int64 [1, T]", "input_pos int64 [1]"], "outputs": ["logits [1, T, V]"]},
        "onnx": {"inputs": ["input_ids", "attention_mask", "position_ids", "past_key_values.N.key/.value"],
                 "outputs": ["logits", "present.N.key/.value"]}}
    validation_data = ValidationData(
        inputs=FileRef("validation/inputs.npz", sha256_file(vd / "inputs.npz")),
        reference=FileRef("validation/reference.npz", sha256_file(vd / "reference.npz"),
                          "float per-token nll and argmax"),
        samples=int(len(evalw)), has_labels=False, source=str(ctx.cfg.eval_text or ctx.cfg.calib_text))
    llm: JSONObject = {
        "float": {"ppl_eval": round(ctx.eval_scores.ppl, 4), "ppl_calib": round(ctx.calib_scores.ppl, 4),
                  "bytes": ctx.fbytes},
        "seq_len": ctx.cfg.seq_len, "calib_windows": int(len(calib)), "eval_windows": int(len(evalw)),
        "max_context": ctx.cfg.max_context, "formats": formats, "tokenizer": "tokenizer",
        # the BOS id every window starts with (None: the model is trained without one; edgeq.llm.text)
        "bos_id": bos_id(ctx.lm.tokenizer)}
    m = Manifest(tool=tool, source=Source(ctx.cfg.model, ctx.lm.kind, None), target=TargetInfo.of(target),
                 config=ctx.cfg.to_dict(), budget={"max_ppl_increase_pct": ctx.cfg.max_ppl_increase},
                 signature=signature, validation_data=validation_data, passes=tuple(passes),
                 artifacts=tuple(artifacts), verdict=verdict(formats, artifacts, ctx.limit, passes), llm=llm)
    return write_manifest(m, out)


def verdict(formats: dict[str, JSONObject], artifacts: list[JSONObject], limit: float,
            passes: list[JSONObject] | None = None) -> JSONObject:
    """Failed when a format has no variant inside the budget on the calibration windows, or when a shipped
    artifact's perplexity on the eval windows is over it: the search picks on calibration text, but the eval
    windows are what ``edgeq check`` re-measures, so export and check must agree on them. Composed by the one
    verdict function (:func:`edgeq.select.verdict.verdict`), as a tensor export's is."""
    unmet = [f"{fmt}: no variant inside x{limit:.3f} float perplexity" for fmt, f in formats.items() if not f["met"]]
    checks = []
    for a in artifacts:
        for v in get_objects(a, "validations"):
            bc = get_object_or_none(v, "budget_check") or {}
            if not v.get("emulated"):  # an emulated run measures speed only: never gated
                ok = bool(bc.get("passed", True))
                checks.append(ArtifactCheck(str(a["name"]), ok, () if ok else (
                    "; ".join(get_strs(bc, "failures") or ["budget missed"]) + " on the eval windows",)))
    stages = [f for p in passes or [] for f in get_strs(p, "failures")]  # the target's checks
    return select_verdict(checks, before=unmet, after=stages).to_dict()
