"""The trained QAT graph the format backends reuse (kept apart from :mod:`edgeq.compress.qat` so the method
registry can name it without importing the method)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class QatGraph:
    """What the backends reuse: the trained PT2E graph (dynamic batch, eval mode) and its activation ranges."""

    prepared: torch.fx.GraphModule  # torch.fx.GraphModule with fake-quant modules
    bits: int
    per_channel: bool
    trained: bool  # False: --train-steps 0, ranges from calibration only (PTQ with the QAT scheme)
    # FX node name -> (scale, zero point) of its per-tensor INT8 activation fake-quant
    activation_ranges: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def weight_qrange(self) -> tuple[int, int]:
        return (-8, 7) if self.bits == 4 else (-127, 127)

    def describe(self) -> str:
        grid = "per-channel" if self.per_channel else "per-tensor"
        how = "QAT-trained" if self.trained else "calibrated (no fine-tune)"
        return f"{self.bits}-bit {grid} symmetric weights, INT8 activations, {how} fake-quant ranges"
