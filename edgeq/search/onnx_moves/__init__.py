"""The ONNX search's moves, as data: one file per kind of move, listed once here in the order they are tried.

A new move is one class (``stage``, ``cumulative``, ``propose(view)``) in its own file plus one line in
:data:`ONNX_MOVES`. A move proposes nothing when it does not apply, so the one list gives every ladder:
linear-dominated graphs climb dynamic INT8 and mixed precision first, then every graph climbs the static moves
(calibration methods, per-channel, hybrid, fragile patterns float, 16-bit / float on the most sensitive nodes).
Moves are asked lazily, so a later one builds on the best trial measured before it.
"""

from __future__ import annotations

from collections.abc import Iterator

from edgeq.search.onnx_moves.base import LadderView, OnnxMove
from edgeq.search.onnx_moves.calibration import Baseline, CalibrationMethods, PerChannel
from edgeq.search.onnx_moves.hybrid import Hybrid
from edgeq.search.onnx_moves.linear import Dynamic, LinearBaseline, MixedPrecision
from edgeq.search.onnx_moves.patterns import FragilePatterns
from edgeq.search.onnx_moves.per_token import PerTokenDynamic
from edgeq.search.onnx_moves.sensitivity import SensitiveNodes
from edgeq.search.trial import TrialConfig

ONNX_MOVES: tuple[OnnxMove, ...] = (
    LinearBaseline(),
    Dynamic(),
    PerTokenDynamic(),
    MixedPrecision(),
    Baseline(),
    CalibrationMethods(),
    PerChannel(),
    Hybrid(),
    FragilePatterns(),
    SensitiveNodes(),
)


def cumulative_stages(moves: tuple[OnnxMove, ...] = ONNX_MOVES) -> frozenset[str]:
    return frozenset(m.stage for m in moves if m.cumulative)


def stages(view: LadderView, moves: tuple[OnnxMove, ...] = ONNX_MOVES) -> Iterator[tuple[str, list[TrialConfig]]]:
    """(stage, configs) per move that applies, each asked only when the search reaches it."""
    for move in moves:
        configs = move.propose(view)
        if configs:
            yield move.stage, configs


__all__ = ["ONNX_MOVES", "LadderView", "OnnxMove", "cumulative_stages", "stages"]
