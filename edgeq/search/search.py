"""Budget-driven search for the smallest, fastest static INT8 ONNX model that meets the accuracy budget.

ONNX-only: trials are ``onnxruntime.quantization`` QDQ configurations of the pre-processed float graph.

The search climbs a ladder of stages, each one more conservative (more float / more bits) than the last, and
stops after the first stage in which some trial meets the budget — so the result is the least-protected model
that passes, which is also the smallest and usually the fastest. Inside a stage the passing trial with the
fewest bytes (sizes within 5 % tie, then the earliest trial) wins. The moves are data, one file each, listed in
:data:`edgeq.search.onnx_moves.ONNX_MOVES` in the order below; a new move is one file plus one line there.

1. ``baseline``     the target's default scheme (what plain quantization gives)
2. ``calibration``  the other calibration methods (minmax / percentile / entropy), then per-channel flipped
3. ``hybrid``       graphs with convolutions and linear layers: static convolutions, dynamic INT8 linears
                    (:mod:`edgeq.onnx.hybrid`), on the best calibration so far
   ``patterns``     known-fragile transformer patterns kept in float, cumulatively: attention-mask arithmetic,
                    Softmax, GELU, LayerNorm, residual Adds (:mod:`edgeq.search.patterns`), each with its
                    weight-free input producers
4. ``sensitivity``  the top-k nodes by added error (:mod:`edgeq.search.sensitivity`) at 16-bit activations,
                    then kept in float, k = 2, 4, 8, ... (on top of the best pattern set)

Linear-dominated graphs (MatMul/Gemm weights outnumber Conv weights: transformers, MLPs) whose export ran the
outlier-aware preparation (:mod:`edgeq.prepare`, which ranks the torch Linears by sensitivity) first climb three
stages with the largest expected gain there, after the baseline:

- ``dynamic``          ONNX Runtime dynamic INT8 MatMuls (activation scale per run), per-channel weights,
                       attention MatMuls (no weights) float;
- ``per-token``        the same with one activation scale per token (:mod:`edgeq.onnx.per_token`): the same
                       bytes, for encoders whose outlier tokens starve the per-tensor scale;
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
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.config import Budget, QuantOptions, SearchOptions
from edgeq.errors import EdgeqError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.onnx.dynamic import activation_matmuls
from edgeq.onnx.hybrid import has_convs_and_linears
from edgeq.onnx.mixed import nodes_for_modules
from edgeq.progress import Progress
from edgeq.search.evaluate import EvalData, Evaluator
from edgeq.search.ladder import linear_dominated, safe_sensitivity
from edgeq.search.onnx_moves import LadderView, cumulative_stages, stages
from edgeq.search.patterns import Neighbourhood, fragile_nodes
from edgeq.search.sensitivity import NodeSensitivity, sensitivity_table
from edgeq.search.trial import SearchResult, Trial, TrialConfig, trial_line
from edgeq.select.ladder import TrialBudget, run_ladder
from edgeq.select.rule import best_effort

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


@dataclass(frozen=True)
class LadderStart:
    """Where the ladder starts: the resolved settings and what the export already knows about the model."""

    base: QuantOptions  # resolved (every field set): the baseline trial's settings
    linear_ranking: tuple[str, ...] = ()  # torch Linears, most sensitive first (edgeq.prepare): mixed-precision moves
    # the export's first INT8 model was already the dynamic one (predicted to beat static,
    # :func:`edgeq.outliers.linear_sim.predict_scheme`): the ladder starts at the dynamic and mixed-precision moves
    first_dynamic: bool = False
    # the export's first static model (built with ``base``) and its bias-correction record: the baseline trial
    # measures it instead of quantizing the same settings again
    seed: tuple[Path, JSONObject | None] | None = None


def search_onnx(data: EvalData, start: LadderStart, budget: Budget, options: SearchOptions, workdir: Path,
                progress: Progress | None = None, on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """Run the ladder (see the module doc) from ``start`` and measure every trial on ``data``.

    The seed (``start.seed``) saves the baseline's quantization: on EfficientNet-Lite1 that was ~85 s of a 300 s
    search limit spent on a model the export already had. With ``start.first_dynamic`` the static baseline is not
    tried first — static QDQ comes only as the later fallbacks.
    """
    check_budget_consistency(budget, options)
    if budget.is_empty() and options.max_size_ratio is None:
        raise UsageError("the search needs a budget", "give --max-accuracy-drop, --min-cosine or --min-sqnr")
    workdir.mkdir(parents=True, exist_ok=True)
    return _OnnxSearch(data, start, budget, options, workdir, progress or Progress(enabled=False), on_trial).run()


class _OnnxSearch:
    """One run of the ONNX ladder: turns its moves into trials, measures them, and picks the result."""

    def __init__(self, data: EvalData, start: LadderStart, budget: Budget, options: SearchOptions, workdir: Path,
                 progress: Progress, on_trial: Callable[[Trial], None] | None) -> None:
        self.data, self.start, self.budget, self.options = data, start, budget, options
        self.progress, self.on_trial = progress, on_trial
        self.t_start = time.perf_counter()
        cap = options.max_size_ratio if options.max_size_ratio is not None else DEFAULT_MAX_SIZE_RATIO
        self.ev = Evaluator(data, budget, workdir, cap)
        self.patterns = fragile_nodes(data.prepped)
        self.linears = list(start.linear_ranking)
        self.linear_first = start.first_dynamic or (bool(self.linears) and linear_dominated(data.prepped))
        self.trials: list[Trial] = []
        # the static ladder reads and fills the node rankings (the baseline's, the one its moves use)
        self.ranking: list[NodeSensitivity] = []  # of the trial the latest sensitivity move builds on
        self.baseline_ranking: list[NodeSensitivity] = []  # of the first trial: the report's sensitivity table
        self.hood = Neighbourhood(data.prepped)
        self.advance_bar: Callable[[int], object] = lambda n: None  # the progress bar's update, while it is open

    def run(self) -> SearchResult:
        options = self.options
        # A bar with an ETA over the trial limit (the search usually stops earlier, at the first passing stage).
        with self.progress.bar(options.max_trials, "search trials", unit="trial") as bar:
            self.advance_bar = bar.update
            run = run_ladder(stages(self.view()), self.evaluate, TrialBudget(options.max_trials, options.max_seconds),
                             cumulative=cumulative_stages())
        sens_rows = sensitivity_table(self.baseline_ranking)
        best = self.best_of(self.trials)
        return SearchResult(met=bool(best and best.passed), best=best, trials=self.trials,
                            float_bytes=self.ev.float_bytes, float_latency_ms=self.ev.float_latency,
                            seconds=time.perf_counter() - self.t_start, stopped=run.stopped,
                            sensitivity=sens_rows, patterns=self.patterns, time_capped=run.time_capped)

    def view(self) -> LadderView:
        """What the moves propose from; the static moves build on the best *static* trial (their moves are QDQ
        settings), mixed precision on the best plain dynamic one (per tensor or per token)."""
        return LadderView(self.start.base, self.options, self.patterns, tuple(self.linears), self.linear_first,
                          self.start.first_dynamic, has_convs_and_linears(self.data.prepped),
                          lambda: self.best_of([t for t in self.trials if not t.config.dynamic]), self.rank_nodes,
                          lambda: self.best_of([t for t in self.trials
                                                if t.config.dynamic and not t.config.fp16_linears]))

    def rank_nodes(self, trial: Trial) -> list[NodeSensitivity]:
        """The node ranking of TRIAL's model, kept for the 16-bit / float moves built on it."""
        if trial.path is None:  # nothing was built: nothing to rank
            return []
        self.ranking = safe_sensitivity(self.data.prepped, trial.path, self.data.calib, self.options)
        return list(self.ranking)

    def best_of(self, pool: list[Trial]) -> Trial | None:
        by_index = {t.index: t for t in pool}
        chosen = best_effort([t.scored() for t in pool])
        return by_index[chosen.order] if chosen is not None else None

    def evaluate(self, stage: str, cfg: TrialConfig) -> Trial:
        trial = self.make(stage, cfg)
        self.trials.append(trial)
        reuse = self.start.seed if stage == "baseline" and not cfg.dynamic else None
        self.progress.stage(f"search trial {trial.index}/{self.options.max_trials} [{stage}] {cfg.label()}"
                            + (" (the export's first model, not rebuilt)" if reuse else ""))
        self.ev.run(trial, reuse)
        self.advance_bar(1)
        self.progress.stage("  -> " + trial_line(trial, self.ev.float_bytes))
        if self.on_trial:
            self.on_trial(trial)
        # linear-dominated: the torch-side ranking (edgeq.prepare) orders the first moves; the ONNX node
        # ranking (a debugger pass over the whole graph) is computed only if the static stages need it
        if trial.index == 1 and trial.path is not None and trial.metrics is not None and not self.linear_first:
            self.baseline_ranking = safe_sensitivity(self.data.prepped, trial.path, self.data.calib,
                                                              self.options)
        return trial

    def make(self, stage: str, cfg: TrialConfig) -> Trial:
        """The trial for one move: ``cfg`` turned into quantization settings on this graph."""
        base, index = self.start.base, len(self.trials) + 1
        if cfg.dynamic:
            return self._dynamic_trial(index, stage, cfg)
        nodes, int16 = self._protected_nodes(cfg)
        q = replace(base, calibration=cfg.calibration, per_channel=cfg.per_channel,
                    nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *nodes))),
                    int16_activation_nodes=tuple(int16), dynamic_linears=cfg.hybrid)
        return Trial(index, stage, cfg, q)

    def _protected_nodes(self, cfg: TrialConfig) -> tuple[list[str], list[str]]:
        """The nodes ``cfg`` keeps in float, and those it gives 16-bit activations."""
        hood = self.hood
        # a pattern node's inputs stay float too (ORT would otherwise quantize them at their producer's output):
        # Softmax after an Add of a -1e4 mask constant is destroyed by the Add's INT8 output, not by Softmax
        nodes: list[str] = list(dict.fromkeys(
            m for c in cfg.exclude for n in self.patterns.get(c, []) for m in hood.with_light_input_producers(n)))
        int16: list[str] = []
        ranking = self.ranking
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
        return nodes, int16

    def _dynamic_trial(self, index: int, stage: str, cfg: TrialConfig) -> Trial:
        base, prepped = self.start.base, self.data.prepped
        mods = self.linears[: cfg.fp16_linears]
        kept = nodes_for_modules(prepped, mods) if mods else []
        # per-channel weights, full-range INT8 (no reduce_range: the activation scale is per run, the host
        # validation measures the kernels the artifact will use)
        dq = replace(base, mode="dynamic", per_token=cfg.per_token, per_channel=cfg.per_channel, reduce_range=False,
                     nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *activation_matmuls(prepped),
                                                           *kept))),
                     int16_activation_nodes=())
        return Trial(index, stage, cfg, dq, fp16_nodes=tuple(kept), fp16_modules=tuple(mods))


def copy_best(result: SearchResult, dst: Path) -> None:
    if result.best is None or result.best.path is None:
        raise EdgeqError("the search produced no usable model", "see the trial errors in the report")
    shutil.copyfile(result.best.path, dst)
