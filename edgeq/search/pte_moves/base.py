"""What a ``.pte`` search move sees and returns: graph facts in, candidate recipes (label, options) out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from edgeq.config import QuantOptions


@dataclass(frozen=True)
class MoveFacts:
    """The facts the moves are chosen from (the PT2E ranking, the torch-side Linear ranking, the graph)."""

    base: QuantOptions  # the first model's settings
    top_nodes: tuple[str, ...]  # PT2E nodes that add error, most first
    linears: tuple[str, ...]  # torch Linear modules, most sensitive first (edgeq.prepare)
    linear_first: bool  # the error sits in the linears (transformers, MLPs)
    conv_and_linear: bool  # the program has convolutions and linear layers
    first_dynamic: bool  # the first model already is the plain dynamic one (predicted to beat static)
    # a ranked convolution -> it and the compute nodes on its edges (edgeq.executorch.neighbourhood): what keeping
    # it in float excludes, since alone only its already on-grid weight would leave INT8
    conv_edges: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


Proposal = tuple[str, QuantOptions]


class PteMove(Protocol):
    """One kind of move: it proposes nothing when it does not apply to the facts."""

    name: str

    def propose(self, facts: MoveFacts) -> list[Proposal]: ...
