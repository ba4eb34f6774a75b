"""Static convolutions, dynamic linears: the same size as the static model, so it comes before any pattern or node
is kept float; later moves build on it when it is the best trial (their 16-bit / float moves then apply to its
static part)."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.trial import TrialConfig


class Hybrid:
    stage, cumulative = "hybrid", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        return [replace(view.anchor(), hybrid=True)] if view.convs_and_linears else []
