"""The profile data model shared by both formats: one row per operator instance, times in ms per run.

Each profile also records the wall time of the *same* runs measured around the runtime call (``wall_ms``) and the
runtime's own run event (``runtime_ms``), so its rows can be checked against the latency they explain on a busy
host: load slows the rows and the wall clock together, while a separate timing run would see a different load.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from edgeq.jsontypes import JSONObject

TOP = 12  # operators the report and the terminal list by name; the rest are summed in one row


@dataclass(frozen=True)
class OpTime:
    name: str  # node name (ONNX) or the XNNPACK / ExecuTorch event name (.pte)
    op: str  # operator kind: ONNX op type, XNNPACK operator, aten kernel, or "runtime"
    where: str  # execution provider / "XNNPACK" / "portable" / "runtime overhead"
    ms: float  # mean per run
    calls: int = 1  # instances of this event per run


@dataclass(frozen=True)
class Profile:
    artifact: str
    format: str
    source: str  # which profiler produced it
    runs: int
    warmup: int
    wall_ms: float  # mean wall time of the profiled runs, around the runtime call
    runtime_ms: float  # mean of the runtime's own whole-run event over the same runs
    ops: tuple[OpTime, ...] = field(default_factory=tuple)  # sorted by time, slowest first
    notes: tuple[str, ...] = ()
    # median over the profiled runs of (the runtime's run event / the wall time of that run): on a busy host a
    # run preempted outside the runtime's event (in the Python call) inflates its wall time alone
    coverage: float | None = None

    @property
    def total_ms(self) -> float:
        return sum(o.ms for o in self.ops)

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["ops"] = [asdict(o) for o in self.ops]
        d["notes"] = list(self.notes)
        d["total_ms"] = self.total_ms
        if d["coverage"] is None:
            d["coverage"] = self.total_ms / self.wall_ms if self.wall_ms > 0 else None
        return d


def mean_per_run(samples: dict[str, list[float]], runs: int) -> dict[str, float]:
    """Per-event time per run: the sum over the profiled runs divided by their number (an event missing from a
    run counts 0 there)."""
    return {k: sum(v) / runs for k, v in samples.items()}


def sorted_ops(ops: list[OpTime]) -> tuple[OpTime, ...]:
    return tuple(sorted(ops, key=lambda o: (-o.ms, o.name)))


def overhead_row(whole_ms: float, parts_ms: float, what: str) -> list[OpTime]:
    """The runtime's time outside every operator event (dispatch, memory planning, input copies), as its own row
    so the table sums to the run it explains instead of silently dropping it."""
    gap = whole_ms - parts_ms
    return [OpTime(what, "runtime", "runtime overhead", gap)] if gap > 0 else []


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def per_run_coverage(run_ms: list[float], wall_ms: list[float]) -> float | None:
    """Median of each run's runtime event over its wall time (the same runs, in order)."""
    pairs = [r / w for r, w in zip(run_ms, wall_ms, strict=False) if w > 0]
    return median(pairs) if pairs else None
