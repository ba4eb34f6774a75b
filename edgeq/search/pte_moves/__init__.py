"""The ``.pte`` search's moves, as data: one file per move, listed once here in the order they are tried.

A new move is one file (a class with ``name`` and ``propose(facts)``) plus one line in :data:`PTE_MOVES`. Each move
proposes nothing when it does not apply to the graph's facts, so the one list gives every ladder: transformers
(dynamic → mixed precision → float fallback), conv nets (hybrid → observer → float fallback), a predicted-dynamic
first model (mixed precision only).
"""

from __future__ import annotations

from edgeq.search.pte_moves.base import MoveFacts, Proposal, PteMove
from edgeq.search.pte_moves.dynamic import DynamicLinears
from edgeq.search.pte_moves.float_fallback import FloatFallback
from edgeq.search.pte_moves.hybrid import Hybrid
from edgeq.search.pte_moves.mixed import MixedPrecision
from edgeq.search.pte_moves.observer import Observer

PTE_MOVES: tuple[PteMove, ...] = (
    DynamicLinears(),
    MixedPrecision(),
    Hybrid(),
    Observer(),
    FloatFallback(),
)


def propose_all(facts: MoveFacts, moves: tuple[PteMove, ...] = PTE_MOVES) -> list[Proposal]:
    return [p for move in moves for p in move.propose(facts)]


__all__ = ["PTE_MOVES", "MoveFacts", "Proposal", "PteMove", "propose_all"]
