"""Fragile patterns (edgeq.search.patterns: Softmax after a mask, LayerNorm, ...) kept float, one category more
per move, on top of the best trial so far."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.patterns import CATEGORIES
from edgeq.search.trial import TrialConfig


class FragilePatterns:
    stage, cumulative = "patterns", True

    def propose(self, view: LadderView) -> list[TrialConfig]:
        anchor = view.anchor()
        present = [c for c in CATEGORIES if view.patterns.get(c)]
        return [replace(anchor, exclude=tuple(present[: i + 1])) for i in range(len(present))]
