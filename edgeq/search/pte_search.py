"""The accuracy-aware search for ``.pte``: the same budget as ONNX, moves ordered by the sensitivity pass.

Moves (each one PT2E quantization of the static-batch program with the XNNPACK quantizer, lowered, run on the
ExecuTorch runtime over the evaluation inputs and checked against the float reference):

1. ``dynamic`` — dynamically quantized linears (XNNPACK's qd8 kernels: one INT8 scale per row = per token), for
   graphs whose most sensitive nodes are linears (transformers' outlier activations), or whenever the export's
   outlier-aware preparation ranked Linear modules (:mod:`edgeq.prepare`);
2. ``mixed precision`` — the dynamic model with the 1, 2, 3, 4, 6, 8 most sensitive Linear modules (that ranking)
   kept float as float16 GEMMs (:mod:`edgeq.executorch.fp16_linears`), within the size cap;
3. ``hybrid`` — for conv nets with linear layers whose ranking does not point at the linears: static INT8
   convolutions, XNNPACK's dynamically quantized linears (float outputs: a classifier's logits leave the 8-bit grid
   that flips top-1 between close classes), the same size as the static model;
4. ``observer`` — the other activation observer (min/max instead of XNNPACK's histogram, or the reverse), the
   ``.pte`` counterpart of the ONNX calibration stage: same size and speed;
5. ``keep-float top-k`` — static INT8 with the k nodes that add the most error kept in float, k = 4 then 16 (float
   fallback is the last resort: it costs size and speed).

Each move is one file in :mod:`edgeq.search.pte_moves`, listed once in ``PTE_MOVES``; a move that does not apply to
the graph's facts proposes nothing, so when neither ranking points at linears the dynamic moves drop out (they do
not touch convolutions). Every trial is checked against the accuracy budget and, when given, ``--max-size-ratio``
(to the float ``.pte``). The first candidate inside the budget replaces the INT8 ``.pte``; if none
is, the shipped ``.pte`` stays the first model (whose verdict already fails) and every trial's distance to the
budget is recorded, closest first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.backends.base import get_backend
from edgeq.backends.executorch import PteBuildInputs, lowered_program
from edgeq.compress.spec import MethodConfig
from edgeq.config import Budget, QuantOptions
from edgeq.errors import EdgeqError
from edgeq.executorch.neighbourhood import float_neighbourhood
from edgeq.executorch.runtime import run_pte
from edgeq.jsontypes import JSONObject, get_object
from edgeq.progress import Progress
from edgeq.recipe import Recipe
from edgeq.search.pte_moves import MoveFacts, propose_all
from edgeq.search.sensitivity import NodeSensitivity
from edgeq.select.evaluation import evaluate_tensor
from edgeq.select.ladder import TrialBudget, run_ladder
from edgeq.select.rule import Scored
from edgeq.select.rule import closest as select_closest
from edgeq.validate.metrics import compare

if TYPE_CHECKING:
    from executorch.exir import ExecutorchProgramManager


@dataclass
class PteTrial:
    index: int
    label: str
    quant: QuantOptions
    metrics: JSONObject = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    passed: bool = False
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    path: Path | None = None
    distance: dict[str, float] = field(default_factory=dict)  # per budget limit, negative = missed (+ size_ratio)
    shortfall: float = math.inf  # the selection engine's distance to the budget (0 = inside)
    size_over_cap: bool = False  # built, and larger than --max-size-ratio allows
    delegation: JSONObject = field(default_factory=dict)  # the lowered program's XNNPACK delegation report
    # the passing trial's lowered program, kept so the golden-I/O bundle reuses it (re-lowering MiniLM: ~1 min)
    program: ExecutorchProgramManager | None = field(default=None, repr=False)

    def scored(self) -> Scored:
        return Scored(self.index, self.bytes if self.error is None else None, self.passed, self.shortfall,
                      errored=self.error is not None)

    def to_dict(self, compression: tuple[MethodConfig, ...] = ()) -> JSONObject:
        """The trial's record; COMPRESSION: the --compress steps the model went through before capture."""
        return {"index": self.index, "label": self.label, "mode": self.quant.mode,
                "dynamic_linears": self.quant.dynamic_linears,
                "nodes_excluded": list(self.quant.nodes_to_exclude),
                "fp16_float_linears": self.quant.fp16_float_linears, "metrics": self.metrics,
                # what it was built from: explain rebuilds it for its per-layer error
                "recipe": replace(Recipe.from_quant_options(self.quant), compression=compression).to_dict(),
                "failures": self.failures, "passed": self.passed, "bytes": self.bytes,
                "seconds": round(self.seconds, 2), "error": self.error, "distance": self.distance}


def plan_moves(base: QuantOptions, ranking: list[NodeSensitivity], max_trials: int,
               linear_ranking: list[str] | None = None, first_dynamic: bool = False,
               conv_and_linear: bool | None = None,
               conv_edges: Mapping[str, tuple[str, ...]] | None = None) -> list[tuple[str, QuantOptions]]:
    """Candidate settings, most promising first: the graph's facts through the move list
    (:data:`edgeq.search.pte_moves.PTE_MOVES`). ``first_dynamic``: the shipped first model is already the plain
    dynamic one (predicted to beat static): start at mixed precision, no static moves."""
    top = [s.node for s in ranking if s.added_nsr > 0]
    linears = list(linear_ranking or [])
    linear_first = (bool(top) and sum(s.op_type == "linear" for s in ranking[:4]) >= 2) or bool(linears)
    # a conv net with linear layers (``conv_and_linear``: from the program's graph — the ranking the manifest keeps
    # is only its top rows)
    kinds = {s.op_type for s in ranking}
    if conv_and_linear is None:
        conv_and_linear = "linear" in kinds and any(k.startswith("conv") for k in kinds)
    facts = MoveFacts(base, tuple(top), tuple(linears), linear_first, conv_and_linear, first_dynamic,
                      dict(conv_edges or {}))
    return propose_all(facts)[:max_trials]


@dataclass(frozen=True)
class PteSearchData:
    """What every ``.pte`` trial is built from, measured on, and checked against."""

    # what the .pte backend builds every move from: the static-batch program, the calibration set, the target and
    # the ``ExecutorchBackendConfig`` options its configure stages chose (e.g. Android's 16 KB segment alignment).
    # Every trial is lowered with them, so the passing trial's program is exactly the program that ships — never a
    # second lowering without the target's layout.
    build: PteBuildInputs
    eval_inputs: list[np.ndarray]
    reference: dict[str, np.ndarray]
    labels: np.ndarray | None
    budget: Budget
    scratch: Path
    float_bytes: int | None
    max_size_ratio: float | None


def search_pte(data: PteSearchData, base: QuantOptions, ranking: list[NodeSensitivity], progress: Progress,
               max_trials: int = 6, linear_ranking: list[str] | None = None,
               first_dynamic: bool = False) -> list[PteTrial]:
    """Run the planned moves until one meets ``data.budget``; returns every trial (the last one passed, if any)."""
    data.scratch.mkdir(parents=True, exist_ok=True)
    static = data.build.static
    targets = {str(n.target) for n in static.graph.nodes if n.op == "call_function"}
    conv_and_linear = "aten.linear.default" in targets and any(t.startswith("aten.conv") for t in targets)
    # the ranked convolutions' edges, so "kept in float" keeps their inputs and outputs float too
    edges = {r.node: float_neighbourhood(static, r.node) for r in ranking if r.op_type.startswith("conv")}
    moves = plan_moves(base, ranking, max_trials, linear_ranking, first_dynamic, conv_and_linear, edges)
    count = iter(range(1, len(moves) + 1))

    done: list[PteTrial] = []

    def evaluate(stage: str, move: tuple[str, QuantOptions]) -> PteTrial:
        i = next(count)
        trial = PteTrial(i, move[0], move[1])
        over = _over_cap_subset(done, move[1])
        if over is not None:  # it keeps more in float than a trial already over the size cap: cannot fit
            trial.error = f"not built: keeps float every layer trial {over.index} kept, which was over the size cap"
        else:
            progress.stage(f"  .pte trial {i}: {move[0]}")
            trial = _run_trial(data, trial)
        done.append(trial)
        return trial

    # one move per stage: the loop stops at the first trial inside the budget
    run = run_ladder(((label, [(label, q)]) for label, q in moves), evaluate, TrialBudget(len(moves)))
    return run.trials


def _over_cap_subset(done: list[PteTrial], quant: QuantOptions) -> PteTrial | None:
    """A built trial of the same scheme that was over the size cap and kept in float a subset of what ``quant``
    keeps: ``quant``'s program is at least as large, so building it would only confirm the miss."""
    keeps = set(quant.nodes_to_exclude)
    for t in done:
        same_scheme = (t.quant.mode, t.quant.dynamic_linears, t.quant.fp16_float_linears) == (
            quant.mode, quant.dynamic_linears, quant.fp16_float_linears)
        if same_scheme and t.size_over_cap and set(t.quant.nodes_to_exclude) <= keeps:
            return t
    return None


def _run_trial(ctx: PteSearchData, t: PteTrial) -> PteTrial:
    """Build the move through the .pte backend (quantized, lowered with the target's backend config), run and score
    it."""
    t0 = time.perf_counter()
    try:
        built = get_backend("pte").build(ctx.build, Recipe.from_quant_options(t.quant),
                                         ctx.scratch / f"trial{t.index}.pte")
        t.path, t.bytes, t.delegation = built.path, built.bytes, get_object(built.details, "delegation")
        outs, _ = run_pte(t.path, ctx.eval_inputs, warmup=0, repeats=0)
        ratio = t.bytes / ctx.float_bytes if ctx.float_bytes else None
        ev = evaluate_tensor(compare(ctx.reference, outs, ctx.labels), ctx.budget, ratio, ctx.max_size_ratio)
        t.metrics, t.failures, t.passed, t.distance = ev.metrics, list(ev.failures), ev.passed, dict(ev.distance)
        t.shortfall, t.size_over_cap = ev.shortfall, ev.size_over_cap
        if t.passed:
            t.program = lowered_program(built)
    except EdgeqError as e:
        t.error = f"{type(e).__name__}: {e.cause[:200]}"
    t.seconds = time.perf_counter() - t0
    return t


def closest(trials: list[PteTrial]) -> list[PteTrial]:
    """Failed trials, nearest to the budget first (the selection engine's rule; errors are never close)."""
    by_index = {t.index: t for t in trials}
    return [by_index[r.order] for r in select_closest([t.scored() for t in trials], n=len(trials))]
