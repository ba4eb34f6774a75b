"""The most sensitive nodes (onnxruntime's QDQ debugger on the best trial's model) with 16-bit activations or kept
float, k growing; each 16-bit move before the float one of the same k (it keeps the INT8 weights)."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.trial import TrialConfig

TOP_KS = (2, 4, 8, 16, 32)


class SensitiveNodes:
    stage, cumulative = "sensitivity", True

    def propose(self, view: LadderView) -> list[TrialConfig]:
        best = view.best_static()
        if best is None or best.path is None:
            return []
        ranking = view.rank_nodes(best)
        anchor = best.config
        ks = [k for k in TOP_KS if k <= len(ranking)]
        return [c for k in ks for c in (replace(anchor, int16_top_k=k), replace(anchor, float_top_k=k))]
