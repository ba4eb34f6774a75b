"""Paired host latency: the float model and its INT8 candidates timed in the same rounds, one thread, batch 1.

Each artifact's own validation run times it alone (a few repeats, the runtime's default thread count). On a shared
host the float and INT8 runs then land at different moments of other jobs' load, and a 2-thread intra-op pool waits
on whichever core another process holds, so the ratio of two such medians swings (plain ORT S8S8 EfficientNet-Lite0:
0.72x in one such run, 0.82-0.92x paired). What a user asks of this number is "is the INT8 model faster than
the float one on this CPU", so both are timed under the same conditions: one intra-op thread (kernel speed, not
thread scheduling), the same single sample, artifacts interleaved round by round (a load burst hits all of them),
medians over the rounds. The ratio is the median of the per-round ratios to the float model.
Timing never decides a verdict: it is recorded and warned about, not budgeted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.jsontypes import JSONObject

METHOD = "paired"


@dataclass(frozen=True)
class PairedTiming:
    """How the paired measurement ran; the same for every artifact of one measurement."""

    threads: int = 1
    warmup: int = 3
    max_rounds: int = 21
    min_rounds: int = 5
    round_seconds: float = 0.02  # each artifact's share of one round: runs per round = this / one run's time
    budget_seconds: float = 12.0  # all rounds of all artifacts together, bounds the cost on large models

    def to_dict(self) -> JSONObject:
        return dict(self.__dict__)


def paired_latency(runs: dict[str, Callable[[], object]], baseline: str,
                   timing: PairedTiming = PairedTiming()) -> dict[str, JSONObject]:
    """Time the callables of ``runs`` interleaved; returns per name its median ms and median ratio to ``baseline``.

    ``runs`` maps a name to a zero-argument callable doing one inference (``baseline`` is one of the names)."""
    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not one of the timed runs {sorted(runs)}")
    one = {}
    for name, fn in runs.items():
        for _ in range(timing.warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        one[name] = max(time.perf_counter() - t0, 1e-6)
    per_round = {name: max(1, int(timing.round_seconds / t)) for name, t in one.items()}
    round_cost = sum(per_round[n] * one[n] for n in runs)
    rounds = int(min(timing.max_rounds, max(timing.min_rounds, timing.budget_seconds // max(round_cost, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            k = per_round[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            times[name].append((time.perf_counter() - t0) * 1000.0 / k)
    base = times[baseline]
    return {name: {"latency_ms": statistics.median(ts), "ratio_to_float": statistics.median(
                       t / b for t, b in zip(ts, base, strict=True)),
                   "rounds": rounds, "runs_per_round": per_round[name], "method": METHOD, **timing.to_dict()}
            for name, ts in times.items()}


def onnx_session_run(path: Path, sample: dict[str, np.ndarray], threads: int) -> Callable[[], object]:
    """One inference of an ONNX / ORT-format model on the CPU EP with ``threads`` intra-op threads."""
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ascontiguousarray(sample[i.name]) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    return lambda: sess.run(names, feeds)


def paired_onnx_latency(baseline: Path, candidates: list[Path], inputs: dict[str, np.ndarray],
                        timing: PairedTiming = PairedTiming()) -> dict[Path, JSONObject]:
    """Paired single-sample latency of ONNX candidates against their float model (first sample of ``inputs``)."""
    sample = {k: v[:1] for k, v in inputs.items() if k != "labels"}
    paths = [baseline, *[c for c in candidates if c != baseline]]
    runs = {str(p): onnx_session_run(p, sample, timing.threads) for p in paths}
    res = paired_latency(runs, str(baseline), timing)
    return {p: res[str(p)] for p in paths}
