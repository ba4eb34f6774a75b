"""The last resort: static INT8 with the 4, then 16 nodes that add the most error kept in float (costs size/speed)."""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class FloatFallback:
    name = "float-fallback"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if facts.first_dynamic:
            return []
        base, top = facts.base, facts.top_nodes
        return [(f"static, top-{k} sensitive nodes float",
                 dataclasses.replace(base, nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *top[:k])))))
                for k in (4, 16) if len(top) >= min(k, 1)]
