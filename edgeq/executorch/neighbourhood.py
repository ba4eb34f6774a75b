"""A node of an exported graph with the compute nodes on its edges: what "kept in float" has to exclude in PT2E.

PT2E quantizes an edge when either end is annotated, so a node excluded alone keeps its INT8 input and output and
only its weight leaves the grid — a no-op for a convolution whose weight the preparation already rounded onto that
grid (GPTQ). Excluding the node together with the nodes that feed it and read it keeps its edges float too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def float_neighbourhood(exported: torch.export.ExportedProgram, name: str) -> tuple[str, ...]:
    """``name`` and the compute nodes that feed it or read it: excluded together, its edges stay float."""
    # the exported graph itself: its compute nodes carry the names the quantizer's exclusions match
    node = next((n for n in exported.graph.nodes if n.name == name), None)
    if node is None:
        return (name,)
    near = [a.name for a in node.all_input_nodes if a.op == "call_function"]
    near += [u.name for u in node.users if u.op == "call_function"]
    return tuple(dict.fromkeys((name, *near)))
