"""Dynamic per-token linears (XNNPACK's qd8 kernels): for graphs whose error sits in the linears."""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class DynamicLinears:
    name = "dynamic"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if not facts.linear_first or facts.first_dynamic:
            return []
        return [("dynamic per-token linears", dataclasses.replace(facts.base, mode="dynamic", per_channel=True))]
