"""The selection engine's one pick rule, ``closest`` and ladder loop (no model: the rule and the loop alone)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeq.select.ladder import TrialBudget, run_ladder
from edgeq.select.rule import Scored, closest, pareto_front, pick
from edgeq.select.summary import Selection


def test_pick_is_the_smallest_passing_and_never_reads_latency() -> None:
    rows = [Scored(0, 100, True, 0.0, latency_ms=1.0), Scored(1, 102, True, 0.0, latency_ms=0.1),
            Scored(2, 50, False, 0.3, latency_ms=0.01)]
    assert pick(rows) == rows[0]  # 102 ties with 100 (within 5 %): the earlier move ships, not the faster one
    # the same rows with other latencies (a loaded machine) pick the same candidate
    noisy = [Scored(r.order, r.bytes, r.passed, r.shortfall, latency_ms=5.0 - r.order) for r in rows]
    assert pick(noisy) is not None and pick(noisy).order == 0  # type: ignore[union-attr]
    assert pick([Scored(0, 10, False, 1.0)]) is None


def test_pick_skips_errors_and_a_clear_size_win_beats_order() -> None:
    rows = [Scored(0, 100, True, 0.0), Scored(1, 60, True, 0.0), Scored(2, 10, True, 0.0, errored=True)]
    assert pick(rows) == rows[1]


def test_closest_orders_by_shortfall_and_never_names_an_error() -> None:
    rows = [Scored(0, 100, False, 0.5), Scored(1, 90, False, 0.1), Scored(2, 80, False, math.inf, errored=True),
            Scored(3, 70, True, 0.0)]
    assert [r.order for r in closest(rows)] == [1, 0]


def test_pareto_front_lower_x_higher_y() -> None:
    assert pareto_front([(1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (4.0, 0.95)]) == [0, 1, 3]


@dataclass(frozen=True)
class _T:
    move: str
    passed: bool


def _ladder(passing: set[str]) -> list[tuple[str, list[str]]]:
    return [("baseline", ["a"]), ("calibration", ["b", "c"]), ("patterns", ["d", "e", "f"]), ("last", ["g"])]


def test_ladder_stops_after_the_first_stage_with_a_pass() -> None:
    run = run_ladder(_ladder(set()), lambda stage, m: _T(m, m in {"c", "e"}), TrialBudget(16))
    assert [t.move for t in run.trials] == ["a", "b", "c"] and run.stopped == "budget met in stage 'calibration'"


def test_cumulative_stage_ends_at_its_first_pass_and_seen_moves_are_skipped() -> None:
    stages = [("baseline", ["a"]), ("patterns", ["a", "d", "e", "f"])]
    run = run_ladder(stages, lambda stage, m: _T(m, m in {"d", "e"}), TrialBudget(16),
                     cumulative=frozenset({"patterns"}))
    assert [t.move for t in run.trials] == ["a", "d"]


def test_the_budget_is_trials_and_the_time_cap_is_flagged() -> None:
    run = run_ladder(_ladder(set()), lambda stage, m: _T(m, False), TrialBudget(3))
    assert len(run.trials) == 3 and run.stopped == "trial limit (3) reached" and not run.time_capped
    capped = run_ladder(_ladder(set()), lambda stage, m: _T(m, False), TrialBudget(16, max_seconds=0.0))
    assert len(capped.trials) == 1 and capped.time_capped and "safety time cap" in capped.stopped
    done = run_ladder(_ladder(set()), lambda stage, m: _T(m, False), TrialBudget(16))
    assert len(done.trials) == 7 and done.stopped == "ladder exhausted"


def test_summary_names_what_shipped() -> None:
    ok = Selection("onnx", True, 4, "budget met in stage 'patterns'", "trial 4 (minmax, float:softmax)")
    assert "shipped trial 4" in ok.line() and "meets the budget" in ok.line()
    miss = Selection("pte", False, 6, "ladder exhausted", "the first INT8 model (pte-int8-static)", time_capped=True)
    assert "shipped the first INT8 model" in miss.line() and "verdict fails" in miss.line()
    assert "safety time cap" in miss.line() and miss.to_dict()["summary"] == miss.line()
