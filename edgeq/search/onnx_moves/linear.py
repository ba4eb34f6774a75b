"""Linear-dominated graphs (transformers, MLPs): the outliers sit in the linears' activations, so per-run (dynamic)
activation scales and kept-float linears are the moves with the largest expected gain; they come first."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.trial import TrialConfig

MIXED_PRECISION_KS = (1, 2, 3, 4, 6, 8)  # linears kept float (fp16 weights), cumulatively; the size cap bounds k


def dynamic_start(view: LadderView) -> TrialConfig:
    """The plain dynamic INT8 config: per-channel weights, one activation scale per tensor."""
    return TrialConfig(view.base.calibration or "minmax", True, dynamic=True)


class LinearBaseline:
    """The static baseline first, unless the export predicted it hopeless (its first model is the dynamic one)."""

    stage, cumulative = "baseline", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        return [view.start] if view.linear_first and not view.first_dynamic else []


class Dynamic:
    """Dynamic INT8 MatMuls with per-channel weights, one activation scale per tensor (ORT's). Not when the first
    model was the predicted dynamic one: that is per token, and per tensor is the coarser of the two scales."""

    stage, cumulative = "dynamic", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        return [dynamic_start(view)] if view.linear_first and not view.first_dynamic else []


class MixedPrecision:
    """On top of the best dynamic INT8 trial (one activation scale per tensor or per token, whichever came closer):
    the k most sensitive linears float with fp16 weights, k growing."""

    stage, cumulative = "mixed-precision", True

    def propose(self, view: LadderView) -> list[TrialConfig]:
        if not view.linear_first:
            return []
        best = view.best_dynamic()
        base = best.config if best is not None else dynamic_start(view)
        return [replace(base, fp16_linears=k) for k in MIXED_PRECISION_KS if k <= len(view.linears)]
