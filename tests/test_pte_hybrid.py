"""The `.pte` hybrid move: static INT8 convolutions, XNNPACK's dynamically quantized linears (float outputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeq.config import QuantOptions
from edgeq.search.pte_search import plan_moves
from edgeq.search.sensitivity import NodeSensitivity


class ConvClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _node(name: str, kind: str, nsr: float) -> NodeSensitivity:
    return NodeSensitivity(name, kind, name, math.nan, 20.0, 30.0, nsr)


def test_hybrid_move_for_conv_nets_with_linears_before_float_fallback() -> None:
    ranking = [_node("conv2d_3", "conv2d", 0.3), _node("add_1", "add", 0.2), _node("linear", "linear", 0.1),
               _node("conv2d", "conv2d", 0.05)]
    moves = plan_moves(QuantOptions(), ranking, max_trials=6)
    assert moves[0][1].dynamic_linears and moves[0][1].mode == "static" and not moves[0][1].nodes_to_exclude
    # then the other activation observer (same size), then the float fallback
    assert moves[1][1].calibration == "minmax" and not moves[1][1].nodes_to_exclude
    assert all(not q.dynamic_linears and q.nodes_to_exclude for _, q in moves[2:])
    # no linear (or no conv): nothing for the hybrid to change
    assert not any(q.dynamic_linears for _, q in plan_moves(QuantOptions(), ranking[:2] + ranking[3:], 6))
    assert not any(q.dynamic_linears for _, q in plan_moves(QuantOptions(), [_node("linear", "linear", 0.1)], 6))
    # the graph decides when given: the manifest's ranking keeps only its top rows (often convolutions only)
    convs_only = [_node("conv2d_3", "conv2d", 0.3), _node("conv2d", "conv2d", 0.05)]
    assert plan_moves(QuantOptions(), convs_only, 6, conv_and_linear=True)[0][1].dynamic_linears
    assert not any(q.dynamic_linears for _, q in plan_moves(QuantOptions(), ranking, 6, conv_and_linear=False))


def test_dynamic_linears_quantize_convs_statically_and_leave_float_logits() -> None:
    from edgeq.data import Dataset
    from edgeq.errors import UsageError
    from edgeq.executorch.quantize import quantize_pt2e
    from edgeq.signature import TensorSpec
    from edgeq.targets import load_target

    torch.manual_seed(0)
    model = ConvClassifier().eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    data, sig = Dataset({"x": x}), [TensorSpec("x", "float32", (1, 3, 8, 8))]
    ep = torch.export.export(model, (torch.from_numpy(x[:1].copy()),), strict=False)
    target = load_target("x86-64")

    def ops(qep: torch.export.ExportedProgram) -> list[str]:
        return [str(n.target) for n in qep.graph.nodes if n.op == "call_function"]

    static, _ = quantize_pt2e(ep, data, sig, QuantOptions(), target)
    hybrid, info = quantize_pt2e(ep, data, sig, QuantOptions(dynamic_linears=True), target)
    assert info["dynamic_linears"] and "linears: dynamic" in info["scheme"]
    assert not any("choose_qparams" in o for o in ops(static))
    assert any("choose_qparams" in o for o in ops(hybrid))  # the linear's input: a scale per run
    assert any("conv2d" in o for o in ops(hybrid)) and any("quantize_per_tensor" in o for o in ops(hybrid))
    # the logits: on an 8-bit grid in the static program, float in the hybrid one
    out = next(n for n in hybrid.graph.nodes if n.op == "output").args[0][0]
    assert "linear" in str(out.target), out.target
    static_out = next(n for n in static.graph.nodes if n.op == "output").args[0][0]
    assert "dequantize" in str(static_out.target), static_out.target
    with pytest.raises(UsageError, match="needs mode='static'"):
        QuantOptions(mode="dynamic", dynamic_linears=True)
