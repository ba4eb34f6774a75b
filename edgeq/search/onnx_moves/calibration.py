"""The static ladder's first rungs: the baseline, the other calibration methods, then per-channel weights."""

from __future__ import annotations

from dataclasses import replace

from edgeq.search.onnx_moves.base import LadderView
from edgeq.search.trial import TrialConfig


class Baseline:
    stage, cumulative = "baseline", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        return [view.start]


class CalibrationMethods:
    """The search's other activation-range methods (``SearchOptions.calibrations``), same size and speed."""

    stage, cumulative = "calibration", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        start = view.start
        return [replace(start, calibration=m) for m in view.options.calibrations if m != start.calibration]


class PerChannel:
    """Per-tensor -> per-channel weights only: per-tensor weights are never the more accurate choice (one scale for
    channels whose ranges differ by orders of magnitude — EfficientNet-Lite1's depthwise convs: 0.68 top-1 agreement
    vs 0.91), so from a per-channel anchor the flip would only spend a trial."""

    stage, cumulative = "calibration", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        anchor = view.anchor()
        return [] if anchor.per_channel else [replace(anchor, per_channel=True)]
