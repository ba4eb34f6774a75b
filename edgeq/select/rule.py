"""The pick rule, ``closest`` and the Pareto front: one definition for every selection loop.

Deterministic by construction: the pick never reads a latency. Host latency moves by a third between two runs on a
shared 2-core machine, so a rule that let it decide would ship different bytes on a quiet laptop and a loaded CI
runner. Among candidates inside the budget the smallest wins; sizes within :data:`SIZE_TIE` of the smallest count
as equal and then the earliest candidate in the strategy's order wins — the least protected move, which is also the
one with the fewest float or 16-bit nodes, hence the faster one. Latency stays in every table, for people.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgeq.config import Budget
from edgeq.validate.metrics import Metrics

SIZE_TIE = 0.05  # sizes within 5 % of the smallest passing candidate count as equal


@dataclass(frozen=True)
class Scored:
    """One measured candidate as the rule sees it: ``order`` is its place in the strategy (lower = tried first)."""

    order: int
    bytes: int | None
    passed: bool
    shortfall: float = math.inf  # how far from the budget (0 = inside); inf when it could not be measured
    errored: bool = False
    latency_ms: float | None = None


def pick(rows: Sequence[Scored]) -> Scored | None:
    """The candidate that ships: smallest inside the budget, ties (within SIZE_TIE) to the earliest in order."""
    passing = [r for r in rows if r.passed and not r.errored and r.bytes is not None]
    if not passing:
        return None
    small = min(r.bytes or 0 for r in passing)
    near = [r for r in passing if (r.bytes or 0) <= small * (1.0 + SIZE_TIE)]
    return min(near, key=lambda r: r.order)


def closest(rows: Sequence[Scored], n: int = 3) -> list[Scored]:
    """Measured candidates outside the budget, nearest first (then smallest); errors never count as close."""
    missed = [r for r in rows if not r.passed and not r.errored and math.isfinite(r.shortfall)]
    return sorted(missed, key=lambda r: (r.shortfall, r.bytes if r.bytes is not None else math.inf, r.order))[:n]


def best_effort(rows: Sequence[Scored]) -> Scored | None:
    """The pick, else the closest miss: what a table highlights when nothing met the budget."""
    chosen = pick(rows)
    if chosen is not None:
        return chosen
    near = closest(rows, 1)
    return near[0] if near else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x is better, higher y is better), sorted by x."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in idx:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def shortfall(m: Metrics, budget: Budget) -> float:
    """How far a candidate is from the budget: the sum of each limit's relative shortfall (0 = met)."""
    s = 0.0
    if budget.min_cosine is not None:
        s += max(0.0, budget.min_cosine - m.cosine_mean) / max(1e-6, 1.0 - budget.min_cosine)
    if budget.min_sqnr is not None:
        s += max(0.0, budget.min_sqnr - m.sqnr_db) / 10.0
    drop = m.accuracy_drop_pts
    if budget.max_accuracy_drop is not None and drop is not None:
        s += max(0.0, drop - budget.max_accuracy_drop) / max(1.0, budget.max_accuracy_drop)
    if budget.min_top1_agreement is not None and m.top1_agreement is not None:
        s += max(0.0, budget.min_top1_agreement - m.top1_agreement) / max(1e-6, 1.0 - budget.min_top1_agreement)
    if budget.min_nn_agreement is not None and m.nn_agreement is not None:
        s += max(0.0, budget.min_nn_agreement - m.nn_agreement) / max(1e-6, 1.0 - budget.min_nn_agreement)
    return s


def size_shortfall(ratio: float, cap: float | None) -> float:
    """A size cap's share of the shortfall (weighted so 10 % over the cap ≈ one missed accuracy limit)."""
    return 0.0 if cap is None else max(0.0, ratio - cap) * 10
