"""``.pte`` honours ``--exclude-node`` / ``--exclude-op-type`` (module paths, FX nodes, aten ops) or refuses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.executorch.quantize import quantize_pt2e
from edgeq.signature import TensorSpec


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _quantize(**kw: tuple[str, ...]) -> tuple[torch.fx.GraphModule, dict[str, object]]:
    x = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    ep = torch.export.export(Two().eval(), (torch.from_numpy(x[:1]).clone(),))
    opts = QuantOptions(mode="static", per_channel=True, max_calibration_samples=8, **kw)  # type: ignore[arg-type]
    qep, info = quantize_pt2e(ep, Dataset({"x": x}), [TensorSpec("x", "float32", (1, 8))], opts, None)
    return qep.graph_module, info


def _quantized_linear_weights(gm: torch.fx.GraphModule) -> int:
    """Linear nodes whose weight comes through a dequantize (i.e. INT8 weights)."""
    count = 0
    for n in gm.graph.nodes:
        if n.op == "call_function" and "linear" in str(n.target):
            w = n.args[1]
            if isinstance(w, torch.fx.Node) and "dequantize" in str(w.target):
                count += 1
    return count


def test_module_path_keeps_that_module_float() -> None:
    gm, info = _quantize()
    assert _quantized_linear_weights(gm) == 2
    gm, info = _quantize(nodes_to_exclude=("fc2",))
    assert _quantized_linear_weights(gm) == 1 and info["nodes_excluded"] == ["fc2"]
    gm, info = _quantize(op_types_to_exclude=("linear",))
    assert _quantized_linear_weights(gm) == 0 and info["op_types_excluded"] == ["linear"]


def test_names_the_graph_does_not_have_are_refused() -> None:
    with pytest.raises(UsageError, match=r"no '/fc2/MatMul'.*") as e:
        _quantize(nodes_to_exclude=("/fc2/MatMul",))
    assert "fc1" in e.value.hint and "--format onnx" in e.value.hint
    with pytest.raises(UsageError, match="op type 'MatMul'"):
        _quantize(op_types_to_exclude=("MatMul",))
