"""Static convolutions, dynamic per-token linears: a conv net's logits leave the 8-bit grid (same size)."""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class Hybrid:
    name = "hybrid"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if facts.linear_first or facts.first_dynamic or not facts.conv_and_linear or facts.base.mode != "static":
            return []
        return [("static convolutions, dynamic per-token linears",
                 dataclasses.replace(facts.base, dynamic_linears=True, per_channel=True))]
