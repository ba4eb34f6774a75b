"""The search's acceptance statistic: a one-sided upper confidence bound on the perplexity ratio."""

from __future__ import annotations

import math

import numpy as np

from edgeq.llm.metrics import WindowScores, compare, ratio_upper_bound


def _scores(per_window_shift: list[float], tokens: int = 31) -> WindowScores:
    nll = np.stack([np.full(tokens, 2.0 + s) for s in per_window_shift])
    return WindowScores(nll, np.zeros_like(nll, dtype=np.int64))


def test_bound_equals_the_ratio_without_spread_and_grows_with_it() -> None:
    base = _scores([0.0] * 8)
    flat = _scores([0.05] * 8)
    assert math.isclose(ratio_upper_bound(base, flat), math.exp(0.05), rel_tol=1e-12)
    # the same mean shift (ratio x1.051), spread over windows: one-sided t(0.95, 7) = 1.895
    spread = _scores([0.05 + d for d in (-0.1, 0.1, -0.1, 0.1, -0.1, 0.1, -0.1, 0.1)])
    m = compare(base, spread)
    sd = float(np.std([-0.1, 0.1] * 4, ddof=1))
    assert m["ppl_ratio"] == round(math.exp(0.05), 4)
    assert math.isclose(ratio_upper_bound(base, spread), math.exp(0.05 + 1.894579 * sd / math.sqrt(8)), rel_tol=1e-5)
    assert m["ppl_ratio_upper"] > 1.10 > m["ppl_ratio"]  # a 10 % budget: the point estimate passes, the bound not


def test_more_windows_tighten_the_bound() -> None:
    rng = np.random.default_rng(0)
    shifts = list(0.05 + 0.08 * rng.standard_normal(64))
    few = ratio_upper_bound(_scores([0.0] * 8), _scores(shifts[:8]))
    many = ratio_upper_bound(_scores([0.0] * 64), _scores(shifts))
    assert many < few
    assert math.isclose(ratio_upper_bound(_scores([0.0]), _scores([0.05])), math.exp(0.05))  # one window: no spread
