"""Mixed precision on the dynamic model: the 1, 2, 3 most sensitive Linear modules kept float."""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class MixedPrecision:
    name = "mixed-precision"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if not (facts.linear_first or facts.first_dynamic):
            return []
        base = facts.base
        return [(f"dynamic per-token linears, top-{k} sensitive linears float",
                 dataclasses.replace(base, mode="dynamic", per_channel=True,
                                     nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude,
                                                                           *facts.linears[:k])))))
                for k in (1, 2, 3) if k <= len(facts.linears)]
