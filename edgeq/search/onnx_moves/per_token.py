"""Per-token dynamic INT8 (edgeq.onnx.per_token): one activation scale per token instead of ONNX Runtime's one per
tensor, for encoders whose outlier tokens leave the others a handful of levels. The same bytes as the plain dynamic
model, a little slower (the scales are computed by plain ONNX operators), so it comes right after it."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.onnx_moves.linear import dynamic_start
from edgeq.search.trial import TrialConfig


class PerTokenDynamic:
    stage, cumulative = "per-token", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        if not view.linear_first:
            return []
        return [replace(dynamic_start(view), per_token=True)]
