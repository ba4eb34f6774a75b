"""``export_llm``: load the LM, tokenize the texts, search each format's variants against the perplexity budget,
measure the shipped ones (perplexity, agreement, tokens/s) and write OUTDIR atomically with edgeq.json."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeq.emulator.qemu import cpu_model
from edgeq.emulator.sysroot import is_ready
from edgeq.errors import OutputExistsError, UsageError
from edgeq.integrity import seal
from edgeq.jsontypes import JSONObject
from edgeq.llm import measure
from edgeq.llm.config import FORMATS, PTE_DELEGATIONS, PTE_PROGRAMS, LlmConfig
from edgeq.llm.metrics import greedy, score
from edgeq.llm.onnx_export import check_architecture
from edgeq.llm.runners import TorchLM
from edgeq.llm.select import Lower, select_format
from edgeq.llm.source import LoadedLM, float_bytes, load_lm, save_hf_folder
from edgeq.llm.text import calib_eval_windows
from edgeq.manifest import Manifest, write_manifest
from edgeq.outdir import commit_output, discard_output, prepare_output
from edgeq.progress import Progress
from edgeq.targets import load_target


@dataclass
class LlmResult:
    output: Path
    manifest: JSONObject
    passed: bool


def check_config(cfg: LlmConfig) -> None:
    bad = [f for f in cfg.formats if f not in FORMATS]
    if bad or not cfg.formats:
        raise UsageError(f"unknown format(s) {bad or cfg.formats} for text generation", "use onnx, pte or onnx,pte")
    if not 2 <= cfg.seq_len < cfg.max_context:
        raise UsageError(f"--seq-len {cfg.seq_len} must be >= 2 and below --max-context {cfg.max_context}")
    if cfg.pte_delegation not in PTE_DELEGATIONS:
        raise UsageError(f"unknown .pte delegation {cfg.pte_delegation!r}", f"use one of {', '.join(PTE_DELEGATIONS)}")
    if cfg.pte_program not in PTE_PROGRAMS:
        raise UsageError(f"unknown .pte program {cfg.pte_program!r}", f"use one of {', '.join(PTE_PROGRAMS)}")
    for v in cfg.variants:  # what a format cannot build is refused by name before the model loads
        v.check()
    if cfg.max_ppl_increase < 0:
        raise UsageError("--max-ppl-increase must be >= 0 (a percentage over float perplexity)")
    load_target(cfg.target)  # typed error for an unknown target, before a long export
    for name in cfg.emulate:  # fail before a long export, not after it
        cpu_model(load_target(name))  # typed error for an unknown or non-ARM target
    if cfg.output.exists() and not cfg.force:
        raise OutputExistsError(f"{cfg.output} exists", "pass --force to replace it")


def with_target_emulation(cfg: LlmConfig, progress: Progress) -> LlmConfig:
    """An ARM target's CPU is emulated like a tensor export's ``auto`` runner: once the emulator is set up, else a
    note says how to get it (decode tokens/s on the host only)."""
    target = load_target(cfg.target)
    if not (target.is_arm and target.cpu.qemu_model) or target.name in cfg.emulate:
        return cfg
    if not is_ready():
        progress.stage(f"note: decode speed on the host only; run `edgeq emulator setup` to measure it on emulated "
                       f"{target.cpu.name} ({target.name})")
        return cfg
    return replace(cfg, emulate=(*cfg.emulate, target.name))


def export_llm(cfg: LlmConfig, progress: Progress | None = None, lower: Lower = measure.build) -> LlmResult:
    check_config(cfg)
    pr = progress or Progress(False)
    cfg = with_target_emulation(cfg, pr)
    pr.stage(f"loading the language model {cfg.model}")
    lm = load_lm(cfg.model)
    if "onnx" in cfg.formats:
        # before minutes of float scoring: a family the ONNX builder cannot write fails now, by name
        check_architecture(str((lm.model.config.architectures or [type(lm.model).__name__])[0]))
    if cfg.max_context > int(getattr(lm.model.config, "max_position_embeddings", cfg.max_context)):
        raise UsageError(f"--max-context {cfg.max_context} exceeds the model's context "
                         f"({lm.model.config.max_position_embeddings})")
    calib, evalw = calib_eval_windows(lm.tokenizer, cfg.calib_text, cfg.eval_text, cfg.seq_len, cfg.calib_windows,
                                      cfg.eval_windows)
    pr.stage(f"text: {len(calib)} calibration and {len(evalw)} evaluation windows of {cfg.seq_len} tokens")

    # The same output rules as every export: a lock, --force only over an edgeq folder, no partial folder left.
    tmp = prepare_output(cfg.output, cfg.force)
    try:
        manifest, passed = _run(cfg, lm, calib, evalw, tmp, pr, lower)
        manifest = write_manifest(seal(manifest, tmp), tmp)  # every file hashed, so `edgeq check` can trust it
        commit_output(tmp, cfg.output)
    except BaseException:
        discard_output(tmp, cfg.output)
        raise
    return LlmResult(cfg.output, manifest.to_json(), passed)


def _run(cfg: LlmConfig, lm: LoadedLM, calib: np.ndarray, evalw: np.ndarray, out: Path,
         pr: Progress, lower: Lower) -> tuple[Manifest, bool]:
    ref = TorchLM(lm.model, cfg.max_context)
    with pr.bar(len(calib) + len(evalw), "float perplexity", unit="window") as bar:
        base_c, base_e = score(ref, calib, bar=bar), score(ref, evalw, bar=bar)
    prompts = [w[: min(16, cfg.seq_len)] for w in evalw[: cfg.greedy_prompts]]
    ref_greedy = [greedy(ref, p, cfg.greedy_tokens) for p in prompts]
    fbytes = float_bytes(lm.model)
    pr.stage(f"float: perplexity {base_e.ppl:.3f} (eval), {fbytes / 1e6:.1f} MB of weights")
    work = out / ".work"
    hf = save_hf_folder(lm, work / "hf") if "onnx" in cfg.formats else None
    tok_dir = out / "tokenizer"
    lm.tokenizer.save_pretrained(str(tok_dir))
    limit = 1 + cfg.max_ppl_increase / 100
    ctx = measure.Context(cfg, lm, hf, work, fbytes, base_c, base_e, ref_greedy, prompts, limit, calib, evalw)
    formats: dict[str, JSONObject] = {}
    artifacts: list[JSONObject] = []
    for fmt in cfg.formats:
        found = select_format(ctx, fmt, pr, lower)
        formats[fmt] = {"trials": found.trials, "pick": found.ship[0][0].name, "met": found.selection.met,
                        "selection": found.selection.to_dict()}
        for rank, (v, path) in enumerate(found.ship):
            artifacts.append(measure.finalize(ctx, v, path, out, pick=rank == 0, progress=pr))
    shutil.rmtree(work, ignore_errors=True)
    manifest = measure.write(ctx, out, artifacts, formats, calib, evalw)
    return manifest, manifest.passed
