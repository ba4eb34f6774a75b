"""What an ONNX search move sees and returns: the ladder's state when the move is reached, candidate configs out.

Moves are asked lazily, in :data:`edgeq.search.onnx_moves.ONNX_MOVES` order, when the search reaches them: a later
move reads the best trial measured so far (``anchor()``) and builds on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeq.config import QuantOptions, SearchOptions
from edgeq.search.sensitivity import NodeSensitivity
from edgeq.search.trial import Trial, TrialConfig


@dataclass(frozen=True)
class LadderView:
    """The facts and the live state an ONNX move proposes from."""

    base: QuantOptions  # resolved: the baseline trial's settings
    options: SearchOptions
    patterns: Mapping[str, Sequence[str]]  # fragile-pattern category -> nodes (edgeq.search.patterns)
    linears: tuple[str, ...]  # torch Linear modules, most sensitive first (edgeq.prepare)
    linear_first: bool  # the error sits in the linears: dynamic and mixed-precision moves come first
    first_dynamic: bool  # the export's first model already is the dynamic one: no static baseline first
    convs_and_linears: bool  # the graph has both (the hybrid move applies)
    best_static: Callable[[], Trial | None]  # the best static trial measured so far
    rank_nodes: Callable[[Trial], list[NodeSensitivity]]  # the node ranking of a trial's model (kept for its moves)
    best_dynamic: Callable[[], Trial | None] = lambda: None  # the best plain dynamic trial (no linear kept float)

    @property
    def start(self) -> TrialConfig:
        return TrialConfig(self.base.calibration or "minmax", bool(self.base.per_channel))

    def anchor(self) -> TrialConfig:
        """The config later moves build on: the best static trial's, else the baseline's."""
        b = self.best_static()
        return b.config if b else self.start


class OnnxMove(Protocol):
    """One kind of move: its stage name, whether its proposals add protection one on another (the stage then ends
    at its first pass), and the configs it proposes — none when it does not apply."""

    stage: str
    cumulative: bool

    def propose(self, view: LadderView) -> list[TrialConfig]: ...
