"""Budget-driven search for the smallest, fastest static INT8 ONNX model that meets the accuracy budget.

ONNX-only: trials are ``onnxruntime.quantization`` QDQ configurations of the pre-processed float graph.

The search climbs a ladder of stages, each one more conservative (more float / more bits) than the last, and
stops after the first stage in which some trial meets the budget — so the result is the least-protected model
that passes, which is also the smallest and usually the fastest. Inside a stage the passing trial with the
fewest bytes (then the lowest host latency) wins.

1. ``baseline``     the target's default scheme (what plain quantization gives)
2. ``calibration``  the other calibration methods (minmax / percentile / entropy), then per-channel flipped
3. ``patterns``     known-fragile transformer patterns kept in float, cumulatively: attention-mask arithmetic,
                    Softmax, GELU, LayerNorm, residual Adds (:mod:`edgeq.search.patterns`), each with its
                    weight-free input producers
   ``hybrid``       graphs with convolutions and linear layers: static convolutions, dynamic INT8 linears
                    (:mod:`edgeq.onnx.hybrid`), on the best calibration so far
4. ``sensitivity``  the top-k nodes by added error (:mod:`edgeq.search.sensitivity`) at 16-bit activations,
                    then kept in float, k = 2, 4, 8, ... (on top of the best pattern set)

Linear-dominated graphs (MatMul/Gemm weights outnumber Conv weights: transformers, MLPs) whose export ran the
outlier-aware preparation (:mod:`edgeq.prepare`, which ranks the torch Linears by sensitivity) first climb two
stages with the largest expected gain there, after the baseline:

- ``dynamic``          ONNX Runtime dynamic INT8 MatMuls (activation scale per run), per-channel weights,
                       attention MatMuls (no weights) float;
- ``mixed-precision``  that model with the k most sensitive Linears float, weights stored as float16
                       (:mod:`edgeq.onnx.mixed`), k = 1, 2, 3, 4, 6, 8 — bounded by the size cap;

then the static ladder above (calibration, per-channel, patterns, float / 16-bit fallback).

The loop, the pick rule and ``closest`` are the selection engine's (:mod:`edgeq.select`): budgeted in trials
(``max_seconds`` is only a safety cap), the pick never reads a latency, so the same inputs ship the same bytes on
any machine. When no trial meets the budget the result carries ``met=False``, the best-scoring trial (smallest
total shortfall) and the closest trials; the export then ships its first INT8 model, not a rejected trial.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.backends.onnx import rename_outputs
from edgeq.config import Budget, QuantOptions, SearchOptions
from edgeq.data import Dataset
from edgeq.errors import EdgeqError, UsageError
from edgeq.onnx.build import build_onnx_int8
from edgeq.onnx.mixed import nodes_for_modules, weights_to_fp16
from edgeq.onnx.quantize import activation_matmuls
from edgeq.progress import Progress
from edgeq.search.ladder import chain, linear_dominated, linear_ladder, safe_sensitivity, static_ladder
from edgeq.search.patterns import Neighbourhood, fragile_nodes
from edgeq.search.sensitivity import sensitivity_table
from edgeq.search.trial import SearchResult, Trial, TrialConfig, trial_line
from edgeq.select.ladder import TrialBudget, run_ladder
from edgeq.select.rule import best_effort, shortfall, size_shortfall
from edgeq.validate.metrics import budget_distance, check_budget, compare
from edgeq.validate.runners.host import HostRunner

# 8-bit uniform quantization of a full-scale signal: SQNR = 6.02·8 + 1.76 dB. An output that passes through
# INT8 tensors cannot be cleaner than this.
INT8_SQNR_CEILING_DB = 6.02 * 8 + 1.76
# Float32 -> INT8 weights is 4×; a size cap at or below this share of the float model needs ≥ 2/3 of the
# weights in INT8, so the signal path is INT8-dominated and bounded by the ceiling above.
INT8_DOMINATED_SIZE_RATIO = 0.5
MIN_SIZE_RATIO = 0.25  # nothing INT8 is smaller than a quarter of float32
# Without an explicit --max-size-ratio a trial must still be a quantized model worth shipping: one that keeps so
# much in float that it is >= 3/4 of the float file "meets" any budget by not quantizing — that is the float model.
DEFAULT_MAX_SIZE_RATIO = 0.75
_CUMULATIVE = frozenset({"patterns", "sensitivity", "mixed-precision"})  # stages ordered from least to most protected

def check_budget_consistency(budget: Budget, options: SearchOptions) -> None:
    """Budgets that no model can meet together are a usage error, raised before any work.

    - ``max_size_ratio`` below 0.25: INT8 weights are a quarter of float32; nothing edgeq makes is smaller.
    - ``min_sqnr`` above the INT8 ceiling (≈49.9 dB) together with ``max_size_ratio`` ≤ 0.5: the size cap forces
      most weights — hence the signal path — into INT8, whose quantization noise alone caps SQNR at ≈49.9 dB.
    - ``min_cosine`` = 1 (exact) with any size cap < 1: only the float model reproduces outputs exactly.
    """
    cap = options.max_size_ratio
    if cap is not None and cap < MIN_SIZE_RATIO:
        raise UsageError(f"--max-size-ratio {cap:g} is below {MIN_SIZE_RATIO} (INT8 weights are 1/4 of float32)",
                         "no INT8 model can be that small; use 0.25-0.35 for an all-INT8 model")
    if cap is not None and cap <= INT8_DOMINATED_SIZE_RATIO and budget.min_sqnr is not None \
            and budget.min_sqnr > INT8_SQNR_CEILING_DB:
        raise UsageError(
            f"--min-sqnr {budget.min_sqnr:g} dB contradicts --max-size-ratio {cap:g}: a model that small is mostly "
            f"INT8, and 8-bit quantization caps SQNR at {INT8_SQNR_CEILING_DB:.1f} dB",
            f"lower --min-sqnr to ≤ {INT8_SQNR_CEILING_DB:.0f} dB or raise --max-size-ratio above "
            f"{INT8_DOMINATED_SIZE_RATIO}")
    if cap is not None and cap < 1 and budget.min_cosine is not None and budget.min_cosine >= 1.0:
        raise UsageError(f"--min-cosine {budget.min_cosine:g} (exact outputs) contradicts --max-size-ratio {cap:g}",
                         "only the float model is exact; use e.g. --min-cosine 0.99")


class _Evaluator:
    """Quantizes one trial and measures it on the evaluation set with the host runner."""

    def __init__(self, prepped: Path, calib: Dataset, inputs_npz: Path, reference: dict[str, np.ndarray],
                 labels: np.ndarray | None, budget: Budget, workdir: Path, max_size_ratio: float | None,
                 float_model: Path | None = None) -> None:
        self.prepped, self.calib, self.inputs_npz = prepped, calib, inputs_npz
        self.reference, self.labels, self.budget, self.workdir = reference, labels, budget, workdir
        self.runner = HostRunner()
        self.max_size_ratio = max_size_ratio
        # Ratios are to the user's float model: the prepared graph (INT8 embedding tables) is already smaller.
        baseline = float_model if float_model is not None else prepped
        self.float_bytes = baseline.stat().st_size
        self.float_latency = self.runner.run(baseline, "onnx", inputs_npz, workdir).latency_ms

    def run(self, trial: Trial, seed: tuple[Path, dict[str, Any] | None] | None = None) -> Trial:
        """Quantize and measure TRIAL; ``seed`` = (model, its bias-correction record) already built with exactly
        this trial's settings (the export's first model), measured instead of quantized again."""
        t0 = time.perf_counter()
        trial.path = self.workdir / f"trial{trial.index:02d}.onnx"
        try:
            if seed is not None:
                shutil.copyfile(seed[0], trial.path)
                trial.bias_correction, trial.reused = seed[1], True
            else:
                qinfo = build_onnx_int8(self.prepped, trial.path, self.calib, trial.quant,
                                        calibration_cache=self.workdir / f"calibration.{trial.quant.calibration}.json")
                trial.bias_correction = qinfo.get("bias_correction")
                if trial.config.dynamic:
                    weights_to_fp16(trial.path, list(trial.fp16_nodes))
            rename_outputs(trial.path, list(self.reference))
            res = self.runner.run(trial.path, "onnx", self.inputs_npz, self.workdir)
            trial.metrics = compare(self.reference, res.outputs, self.labels)
            trial.latency_ms = res.latency_ms
            trial.bytes = trial.path.stat().st_size
            bc = check_budget(trial.metrics, self.budget)
            failures = list(bc.failures)
            ratio = trial.bytes / self.float_bytes
            if self.max_size_ratio is not None and ratio > self.max_size_ratio + 1e-9:
                failures.append(f"size {ratio:.3f}× float > {self.max_size_ratio:g}×")
            trial.failures = tuple(failures)
            trial.passed = not failures
            trial.distance = budget_distance(trial.metrics, self.budget)
            if self.max_size_ratio is not None:
                trial.distance["size_ratio"] = round(self.max_size_ratio - ratio, 6)
            trial.shortfall = shortfall(trial.metrics, self.budget) + size_shortfall(ratio, self.max_size_ratio)
        except EdgeqError as e:  # one broken configuration must not end the search
            trial.error = e.cause
        trial.seconds = time.perf_counter() - t0
        return trial


def search_onnx(prepped: Path, calib: Dataset, inputs_npz: Path, reference: dict[str, np.ndarray], labels: np.ndarray | None,
                base: QuantOptions, budget: Budget, options: SearchOptions, workdir: Path,
                progress: Progress | None = None,
                on_trial: Callable[[Trial], None] | None = None, float_model: Path | None = None,
                linear_ranking: list[str] | None = None, first_dynamic: bool = False,
                seed: tuple[Path, dict[str, Any] | None] | None = None) -> SearchResult:
    """Run the ladder (see the module doc). ``base`` must be resolved (every field set).

    ``seed``: the export's first static model (built with ``base``, bias-corrected, and its bias-correction record):
    the baseline trial measures it instead of quantizing the same settings again (on EfficientNet-Lite1 that
    was ~85 s of a 300 s search limit spent on a model the export already had).

    ``first_dynamic``: the export's first INT8 model was already the dynamic one (the preparation predicted it
    beats static, :func:`edgeq.prepare.predict_scheme`): the static baseline is not tried first — the ladder
    starts at the dynamic and mixed-precision moves, and static QDQ comes only as the later fallbacks.
    """
    progress = progress or Progress(enabled=False)
    check_budget_consistency(budget, options)
    if budget.is_empty() and options.max_size_ratio is None:
        raise UsageError("the search needs a budget", "give --max-accuracy-drop, --min-cosine or --min-sqnr")
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cap = options.max_size_ratio if options.max_size_ratio is not None else DEFAULT_MAX_SIZE_RATIO
    ev = _Evaluator(prepped, calib, inputs_npz, reference, labels, budget, workdir, cap, float_model)
    patterns = fragile_nodes(prepped)
    linears = list(linear_ranking or [])
    linear_first = first_dynamic or (bool(linears) and linear_dominated(prepped))
    trials: list[Trial] = []
    sens_rows: list[dict[str, Any]] = []
    state: dict[str, Any] = {"ranking": None, "baseline_ranking": None}

    hood = Neighbourhood(prepped)

    def make(stage: str, cfg: TrialConfig) -> Trial:
        # a pattern node's inputs stay float too (ORT would otherwise quantize them at their producer's output):
        # Softmax after an Add of a -1e4 mask constant is destroyed by the Add's INT8 output, not by Softmax
        nodes: list[str] = list(dict.fromkeys(
            m for c in cfg.exclude for n in patterns.get(c, []) for m in hood.with_light_input_producers(n)))
        int16: list[str] = []
        ranking = state["ranking"] or []
        if cfg.float_top_k:
            # the node's whole island (input producers, node, readers) skips Q/DQ on the node's tensors
            for s in [s for s in ranking if s.node not in nodes][: cfg.float_top_k]:
                nodes += hood.island(s.node)
            nodes = list(dict.fromkeys(nodes))
        if cfg.int16_top_k:
            # 16-bit Q/DQ on the node's inputs and outputs (= the outputs of its input producers and itself)
            for s in [s for s in ranking if s.node not in nodes][: cfg.int16_top_k]:
                int16 += hood.with_input_producers(s.node)
            int16 = [n for n in dict.fromkeys(int16) if n not in nodes]
        if cfg.dynamic:
            mods = linears[: cfg.fp16_linears]
            kept = nodes_for_modules(prepped, mods) if mods else []
            # per-channel weights, full-range INT8 (no reduce_range: the activation scale is per run, the host
            # validation measures the kernels the artifact will use)
            dq = replace(base, mode="dynamic", per_channel=cfg.per_channel, reduce_range=False,
                         nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *activation_matmuls(prepped),
                                                               *kept))),
                         int16_activation_nodes=())
            return Trial(len(trials) + 1, stage, cfg, dq, fp16_nodes=tuple(kept), fp16_modules=tuple(mods))
        q = replace(base, calibration=cfg.calibration, per_channel=cfg.per_channel,
                    nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *nodes))),
                    int16_activation_nodes=tuple(int16), dynamic_linears=cfg.hybrid)
        return Trial(len(trials) + 1, stage, cfg, q)

    def best_of(pool: list[Trial]) -> Trial | None:
        by_index = {t.index: t for t in pool}
        chosen = best_effort([t.scored() for t in pool])
        return by_index[chosen.order] if chosen is not None else None

    def evaluate(stage: str, cfg: TrialConfig) -> Trial:
        trial = make(stage, cfg)
        trials.append(trial)
        reuse = seed if stage == "baseline" and not cfg.dynamic else None
        progress.stage(f"search trial {trial.index}/{options.max_trials} [{stage}] {cfg.label()}"
                       + (" (the export's first model, not rebuilt)" if reuse else ""))
        ev.run(trial, reuse)
        bar.update(1)
        progress.stage("  -> " + trial_line(trial, ev.float_bytes))
        if on_trial:
            on_trial(trial)
        # linear-dominated: the torch-side ranking (edgeq.prepare) orders the first moves; the ONNX node
        # ranking (a debugger pass over the whole graph) is computed only if the static stages need it
        if trial.index == 1 and trial.path is not None and trial.metrics is not None and not linear_first:
            state["baseline_ranking"] = safe_sensitivity(prepped, trial.path, calib, options)
        return trial

    # A bar with an ETA over the trial limit (the search usually stops earlier, at the first passing stage).
    with progress.bar(options.max_trials, "search trials", unit="trial") as bar:
        ladder = linear_ladder(base, linears, baseline=not first_dynamic) if linear_first else iter(())
        # the static ladder builds on the best *static* trial (its moves are QDQ settings)
        static = static_ladder(base, patterns, state, lambda: best_of([t for t in trials if not t.config.dynamic]),
                               prepped, calib, options)
        run = run_ladder(chain(ladder, static), evaluate, TrialBudget(options.max_trials, options.max_seconds),
                         cumulative=_CUMULATIVE)

    sens_rows = sensitivity_table(state.get("baseline_ranking") or [])
    best = best_of(trials)
    return SearchResult(met=bool(best and best.passed), best=best, trials=trials, float_bytes=ev.float_bytes,
                        float_latency_ms=ev.float_latency, seconds=time.perf_counter() - t_start, stopped=run.stopped,
                        sensitivity=sens_rows, patterns=patterns, time_capped=run.time_capped)


def copy_best(result: SearchResult, dst: Path) -> None:
    if result.best is None or result.best.path is None:
        raise EdgeqError("the search produced no usable model", "see the trial errors in the report")
    shutil.copyfile(result.best.path, dst)
