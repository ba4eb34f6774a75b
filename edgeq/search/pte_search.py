"""The accuracy-aware search for ``.pte``: the same budget as ONNX, moves ordered by the sensitivity pass.

Moves (each one PT2E quantization of the static-batch program with the XNNPACK quantizer, lowered, run on the
ExecuTorch runtime over the evaluation inputs and checked against the float reference):

1. ``dynamic`` — dynamically quantized linears (XNNPACK's qd8 kernels: one INT8 scale per row = per token), for
   graphs whose most sensitive nodes are linears (transformers' outlier activations), or whenever the export's
   outlier-aware preparation ranked Linear modules (:mod:`edgeq.prepare`);
2. ``mixed precision`` — the dynamic model with the 1, 2, 3 most sensitive Linear modules (that ranking) kept
   float, within the size cap;
3. ``hybrid`` — for conv nets with linear layers whose ranking does not point at the linears: static INT8
   convolutions, XNNPACK's dynamically quantized linears (float outputs: a classifier's logits leave the 8-bit grid
   that flips top-1 between close classes), the same size as the static model;
4. ``keep-float top-k`` — static INT8 with the k nodes that add the most error kept in float, k = 4 then 16 (float
   fallback is the last resort: it costs size and speed).

When neither ranking points at linears the float fallback goes first and the dynamic moves are dropped
(they do not touch convolutions). Every trial is checked against the accuracy budget and, when given, ``--max-size-ratio``
(to the float ``.pte``). The first candidate inside the budget replaces the INT8 ``.pte``; if none
is, the shipped ``.pte`` stays the first model (whose verdict already fails) and every trial's distance to the
budget is recorded, closest first.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.config import Budget, QuantOptions
from edgeq.data import Dataset
from edgeq.progress import Progress
from edgeq.search.sensitivity import NodeSensitivity


@dataclass
class PteTrial:
    index: int
    label: str
    quant: QuantOptions
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    passed: bool = False
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    path: Path | None = None
    distance: dict[str, float] = field(default_factory=dict)  # per budget limit, negative = missed (+ size_ratio)
    # the passing trial's lowered program, kept so the golden-I/O bundle reuses it (re-lowering MiniLM: ~1 min)
    program: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "mode": self.quant.mode,
                "dynamic_linears": self.quant.dynamic_linears,
                "nodes_excluded": list(self.quant.nodes_to_exclude), "metrics": self.metrics,
                "failures": self.failures, "passed": self.passed, "bytes": self.bytes,
                "seconds": round(self.seconds, 2), "error": self.error, "distance": self.distance}


def plan_moves(base: QuantOptions, ranking: list[NodeSensitivity], max_trials: int,
               linear_ranking: list[str] | None = None,
               first_dynamic: bool = False, conv_and_linear: bool | None = None) -> list[tuple[str, QuantOptions]]:
    """Candidate settings, most promising first (see the module docstring). ``first_dynamic``: the shipped first
    model is already the plain dynamic one (predicted to beat static): start at mixed precision, no static moves."""
    top = [s.node for s in ranking if s.added_nsr > 0]
    linears = list(linear_ranking or [])
    linear_first = (bool(top) and sum(s.op_type == "linear" for s in ranking[:4]) >= 2) or bool(linears)
    dynamic = ("dynamic per-token linears", dataclasses.replace(base, mode="dynamic", per_channel=True))
    # mixed precision on top of the dynamic model: the most sensitive linears (torch-side ranking) kept float
    mixed = [(f"dynamic per-token linears, top-{k} sensitive linears float",
              dataclasses.replace(base, mode="dynamic", per_channel=True,
                                  nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *linears[:k])))))
             for k in (1, 2, 3) if k <= len(linears)]
    fallback = [(f"static, top-{k} sensitive nodes float",
                 dataclasses.replace(base, nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *top[:k])))))
                for k in (4, 16) if len(top) >= min(k, 1)]
    # a conv net with linear layers (a classifier head, a conv stem before attention): the linears dynamic, so their
    # outputs (the logits) leave in float instead of on an 8-bit grid; the same size, so before any float fallback
    # (``conv_and_linear``: from the program's graph — the ranking the manifest keeps is only its top rows)
    kinds = {s.op_type for s in ranking}
    if conv_and_linear is None:
        conv_and_linear = "linear" in kinds and any(k.startswith("conv") for k in kinds)
    hybrid = ([("static convolutions, dynamic per-token linears",
                dataclasses.replace(base, dynamic_linears=True, per_channel=True))]
              if conv_and_linear and base.mode == "static" else [])
    if first_dynamic:
        return mixed[:max_trials]
    moves = [dynamic, *mixed, *fallback] if linear_first else [*hybrid, *fallback]
    return moves[:max_trials]


def search_pte(static: Any, calib: Dataset, signature: list[Any], eval_inputs: list[Any],
               reference: dict[str, Any], labels: Any, base: QuantOptions, budget: Budget, target: Any,
               ranking: list[NodeSensitivity], scratch: Path, progress: Progress,
               max_trials: int = 6, linear_ranking: list[str] | None = None, float_bytes: int | None = None,
               max_size_ratio: float | None = None, first_dynamic: bool = False) -> list[PteTrial]:
    """Run the planned moves until one meets ``budget``; returns every trial (the last one passed, if any)."""
    from edgeq.errors import EdgeqError
    from edgeq.executorch.lower import lower_to_executorch
    from edgeq.executorch.quantize import quantize_pt2e
    from edgeq.executorch.runtime import run_pte
    from edgeq.validate.metrics import budget_distance, check_budget, compare

    scratch.mkdir(parents=True, exist_ok=True)
    trials: list[PteTrial] = []
    targets = {str(n.target) for n in static.graph.nodes if n.op == "call_function"}
    conv_and_linear = "aten.linear.default" in targets and any(t.startswith("aten.conv") for t in targets)
    for i, (label, q) in enumerate(plan_moves(base, ranking, max_trials, linear_ranking, first_dynamic,
                                              conv_and_linear), start=1):
        t = PteTrial(i, label, q)
        t0 = time.perf_counter()
        progress.stage(f"  .pte trial {i}: {label}")
        try:
            qep, _ = quantize_pt2e(static, calib, signature, q, target)
            program, _ = lower_to_executorch(qep, None, target.executorch.partitioner)
            t.path = scratch / f"trial{i}.pte"
            t.path.write_bytes(program.buffer)
            t.bytes = t.path.stat().st_size
            outs, _ = run_pte(t.path, eval_inputs, warmup=0, repeats=0)
            m = compare(reference, outs, labels)
            bc = check_budget(m, budget)
            t.metrics, t.failures = m.to_dict(), list(bc.failures)
            t.distance = budget_distance(m, budget)
            if float_bytes and max_size_ratio is not None:
                t.distance["size_ratio"] = round(max_size_ratio - t.bytes / float_bytes, 6)
                if t.bytes > max_size_ratio * float_bytes + 1e-9:
                    t.failures.append(f"size {t.bytes / float_bytes:.3f}× float > {max_size_ratio:g}×")
            t.passed = not t.failures
        except EdgeqError as e:
            t.error = f"{type(e).__name__}: {e.cause[:200]}"
        t.seconds = time.perf_counter() - t0
        trials.append(t)
        if t.passed:
            t.program = program
            break
    return trials


def closest(trials: list[PteTrial]) -> list[PteTrial]:
    """Failed trials, fewest budget failures first (errors last)."""
    return sorted((t for t in trials if not t.passed), key=lambda t: (t.error is not None, len(t.failures)))
