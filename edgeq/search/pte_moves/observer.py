"""The other activation observer for a static program: min/max ranges instead of XNNPACK's histogram (L2-optimal)
ranges, or the histogram instead of min/max — the ``.pte`` counterpart of the ONNX search's calibration stage.

Same size and speed as the first model, so it comes before any float fallback. A histogram clips the tails of a
range to spend the 256 levels on the bulk; on a net whose rare large activations carry the decision (a classifier's
last projections) min/max keeps them, and the reverse holds for a long-tailed range with an unimportant tail.
"""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class Observer:
    name = "observer"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if facts.linear_first or facts.first_dynamic or facts.base.mode != "static":
            return []
        if facts.base.calibration == "minmax":  # the first model used min/max: try the histogram
            return [("static, histogram (L2-optimal) activation ranges",
                     dataclasses.replace(facts.base, calibration="entropy"))]
        return [("static, min/max activation ranges", dataclasses.replace(facts.base, calibration="minmax"))]
