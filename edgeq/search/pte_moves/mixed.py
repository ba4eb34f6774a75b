"""Mixed precision on the dynamic model: the k most sensitive Linear modules kept float, with float16 weights.

The kept linears run as XNNPACK float16 GEMMs (:mod:`edgeq.executorch.fp16_linears`): half the bytes of float32,
so a 12-layer encoder can keep as many layers out of INT8 as its ONNX artifact under the same size cap. k grows
as in the ONNX move (:data:`edgeq.search.onnx_moves.linear.MIXED_PRECISION_KS`); the size cap bounds it.
"""

from __future__ import annotations

import dataclasses

from edgeq.search.onnx_moves.linear import MIXED_PRECISION_KS
from edgeq.search.pte_moves.base import MoveFacts, Proposal


class MixedPrecision:
    name = "mixed-precision"

    def propose(self, facts: MoveFacts) -> list[Proposal]:
        if not (facts.linear_first or facts.first_dynamic):
            return []
        base = facts.base
        return [(f"dynamic per-token linears, top-{k} sensitive linears float16",
                 dataclasses.replace(base, mode="dynamic", per_channel=True, fp16_float_linears=True,
                                     nodes_to_exclude=tuple(dict.fromkeys((*base.nodes_to_exclude,
                                                                           *facts.linears[:k])))))
                for k in MIXED_PRECISION_KS if k <= len(facts.linears)]
