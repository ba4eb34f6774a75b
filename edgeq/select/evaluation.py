"""The one evaluator interface: how every selection loop scores a measured candidate against its budget.

A tensor candidate is scored on output-fidelity metrics against a :class:`~edgeq.config.Budget` and, when given,
a size cap (:func:`evaluate_tensor`: the ONNX and ``.pte`` searches); a language model on its perplexity ratio to
float against ``1 + max_ppl_increase / 100`` (:func:`evaluate_perplexity`: the LLM ladder, the shipped artifact's
budget check and ``edgeq check``). Both give an :class:`Evaluation`: passed, the failures in words, the
``shortfall`` the pick rule and ``closest`` rank on, and the signed ``distance`` to each limit (negative = missed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from edgeq.config import Budget
from edgeq.jsontypes import JSONObject
from edgeq.select.rule import shortfall, size_shortfall
from edgeq.validate.metrics import Metrics, budget_distance, check_budget


class Evaluation(Protocol):
    """A candidate scored against its budget, whatever the task."""

    @property
    def passed(self) -> bool: ...

    @property
    def failures(self) -> tuple[str, ...]: ...

    @property
    def shortfall(self) -> float:
        """How far from the budget (0 = inside): what :func:`edgeq.select.rule.closest` sorts on."""

    @property
    def distance(self) -> Mapping[str, float]:
        """Per limit in force: the signed margin to it (negative = missed)."""

    @property
    def metrics(self) -> JSONObject:
        """What was measured, as the manifest records it."""


@dataclass(frozen=True)
class TensorEvaluation:
    """Output-fidelity metrics against the accuracy budget and the size cap."""

    measured: Metrics
    passed: bool
    failures: tuple[str, ...]
    shortfall: float
    distance: Mapping[str, float]
    size_over_cap: bool = False  # larger than the cap allows (a larger build of the same scheme cannot fit either)

    @property
    def metrics(self) -> JSONObject:
        return self.measured.to_dict()


def evaluate_tensor(metrics: Metrics, budget: Budget, size_ratio: float | None = None,
                    cap: float | None = None) -> TensorEvaluation:
    """Score METRICS against BUDGET and, when both are given, the size ratio to float against ``cap``."""
    failures = list(check_budget(metrics, budget).failures)
    distance = budget_distance(metrics, budget)
    short = shortfall(metrics, budget)
    over = False
    if size_ratio is not None and cap is not None:
        distance["size_ratio"] = round(cap - size_ratio, 6)
        short += size_shortfall(size_ratio, cap)
        over = size_ratio > cap + 1e-9
        if over:
            failures.append(f"size {size_ratio:.3f}× float > {cap:g}×")
    return TensorEvaluation(metrics, not failures, tuple(failures), short, distance, over)


@dataclass(frozen=True)
class PerplexityEvaluation:
    """A perplexity measurement (:func:`edgeq.llm.metrics.compare`) against the ratio limit."""

    measured: Mapping[str, float]
    passed: bool
    failures: tuple[str, ...]
    shortfall: float
    distance: Mapping[str, float]

    @property
    def metrics(self) -> JSONObject:
        return dict(self.measured)


def evaluate_perplexity(metrics: Mapping[str, float], limit: float,
                        bound: str = "ppl_ratio") -> PerplexityEvaluation:
    """Score a perplexity measurement: inside when ``metrics[bound] <= limit``. ``bound`` is ``"ppl_ratio"`` (the
    shipped artifact on the eval text, and ``edgeq check``) or ``"ppl_ratio_upper"`` (the ladder on the calibration
    text: the one-sided confidence bound, so a lucky handful of windows does not pass a rung)."""
    value = float(metrics[bound])
    passed = value <= limit
    what = "perplexity" if bound == "ppl_ratio" else "perplexity upper bound"
    failures = () if passed else (f"{what} x{value:.4f} > x{limit:.4f}",)
    short = max(0.0, value - limit) / max(1e-6, limit - 1.0)
    return PerplexityEvaluation(metrics, passed, failures, short, {bound: round(limit - value, 6)})
