"""The ``.pte`` "kept in float" move keeps the layer's input and output edges float too: PT2E quantizes an edge
when either end is annotated, so excluding a node alone only takes its weight off the INT8 grid — a no-op for
weights the outlier preparation already rounded onto it (MobileNetV2: exactly 0.000 dB on each of its three worst
convs, docs/explanation/benchmarks/real-models.md)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.executorch.neighbourhood import float_neighbourhood
from edgeq.explain.layers import OutputError
from edgeq.explain.pte_layers import pt2e_output_error
from edgeq.signature import TensorSpec

SHAPE = (1, 3, 12, 12)


class Chain(nn.Module):
    """An inverted-residual shape: conv -> ReLU6 -> projection conv -> residual add (the add reads another conv of
    the input), every weight already on its symmetric per-channel INT8 grid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 1), nn.Conv2d(3, 8, 1)
        with torch.no_grad():
            for conv in (self.a, self.b, self.c):
                w = conv.weight
                scale = w.abs().amax((1, 2, 3), keepdim=True) / 127.0
                w.copy_((w / scale).round() * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.b(torch.clamp(self.a(x), 0, 6)) + self.c(x)
        return out


def test_only_the_neighbourhood_move_changes_an_on_grid_layer() -> None:
    x = np.random.default_rng(0).normal(size=(16, *SHAPE[1:])).astype(np.float32)
    ep = torch.export.export(Chain().eval(), (torch.from_numpy(x[:1]).clone(),))
    data, sig = Dataset({"x": x}), [TensorSpec("x", "float32", SHAPE)]
    opts = QuantOptions(mode="static", per_channel=True, max_calibration_samples=16)
    middle = next(n.name for n in ep.module().graph.nodes if n.op == "call_function" and "conv" in n.name
                  and n.name != "conv2d")  # the second conv
    hood = float_neighbourhood(ep, middle)
    assert hood[0] == middle and len(hood) == 3  # the clamp before it and the add after it

    def measure(keep: tuple[str, ...]) -> OutputError:
        return pt2e_output_error(ep, data, data, sig, opts, None, keep)  # type: ignore[arg-type]

    base = measure(())
    alone, wider = measure((middle,)), measure(hood)
    assert abs(alone.sqnr_db - base.sqnr_db) < 0.01  # the node alone: its INT8 edges stay, its weight was on the grid
    assert wider.sqnr_db > base.sqnr_db + 0.1  # with its edges float the rebuild measurably changes
    assert wider.better_samples(base) > len(x) // 2  # and it holds sample by sample, not on one lucky sample
