"""The ladder strategy: stages of moves, least protected first, budgeted in trials.

A strategy yields ``(stage, moves)`` lazily, so a later stage can build on the best candidate so far (the ONNX
static ladder's 16-bit and float moves start from the best calibration). The loop evaluates moves in order and
stops after the first stage in which a candidate meets the budget — the least protected model that passes. In a
*cumulative* stage every move adds protection to the previous one, so the stage ends at its first pass.

The budget is a number of trials: the same inputs evaluate the same moves on a quiet laptop and on a loaded CI
runner, so they ship the same bytes. ``max_seconds`` is only a safety cap; when it is what stopped the search,
``LadderRun.time_capped`` says so and the summary and ``--json`` carry it (the result then depends on the machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Evaluated(Protocol):
    @property
    def passed(self) -> bool: ...


M = TypeVar("M", bound=Hashable)
T = TypeVar("T", bound=Evaluated)


@dataclass(frozen=True)
class TrialBudget:
    max_trials: int
    max_seconds: float | None = None  # safety cap, checked between trials; the first trial always runs


@dataclass
class LadderRun(Generic[T]):
    trials: list[T]
    stopped: str  # why the loop ended, one phrase
    time_capped: bool = False  # the wall-clock safety cap, not the trial budget, ended it


def run_ladder(stages: Iterable[tuple[str, Sequence[M]]], evaluate: Callable[[str, M], T], budget: TrialBudget,
               cumulative: frozenset[str] = frozenset()) -> LadderRun[T]:
    """Evaluate each stage's moves in order (a move seen before is skipped) until a stage has a passing one."""
    t0 = time.perf_counter()
    trials: list[T] = []
    seen: set[M] = set()
    for stage, moves in stages:
        passed_here = False
        for move in moves:
            if move in seen:
                continue
            if len(trials) >= budget.max_trials:
                return LadderRun(trials, f"trial limit ({budget.max_trials}) reached")
            if trials and budget.max_seconds is not None and time.perf_counter() - t0 > budget.max_seconds:
                return LadderRun(trials, f"safety time cap ({budget.max_seconds:g} s) reached", time_capped=True)
            seen.add(move)
            trial = evaluate(stage, move)
            trials.append(trial)
            passed_here = passed_here or trial.passed
            if trial.passed and stage in cumulative:
                break  # later moves of this stage only add float / bits to a model that already passes
        if passed_here:
            return LadderRun(trials, f"budget met in stage {stage!r}")
    return LadderRun(trials, "ladder exhausted")
