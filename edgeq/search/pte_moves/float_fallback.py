"""The last resort: static INT8 with the 4, then 16 nodes that add the most error kept in float (costs size/speed).

A convolution is kept in float with its input and output (:attr:`MoveFacts.conv_edges`): excluded alone, PT2E
keeps its INT8 edges and only its weight leaves the grid, which the preparation had already rounded onto that
grid, so the trial cost size and measured nothing (MobileNetV2: top-1 agreement unchanged at 0.8475)."""

from __future__ import annotations

import dataclasses

from edgeq.search.pte_moves.base import MoveFacts, Proposal


class FloatFallback:
    name = "float-fallback"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if facts.first_dynamic:
            return []
        base, top = facts.base, facts.top_nodes
        out: list[Proposal] = []
        for k in (4, 16):
            if not top:
                break
            chosen = top[:k]
            kept = [n for node in chosen for n in facts.conv_edges.get(node, (node,))]
            edges = " (convolutions with their inputs and outputs)" if any(n in facts.conv_edges for n in chosen) else ""
            out.append((f"static, top-{k} sensitive nodes float{edges}",
                        dataclasses.replace(base, nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude, *kept))))))
        return out
