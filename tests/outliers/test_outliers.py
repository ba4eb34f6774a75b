"""edgeq.outliers: each method keeps the float function, and lowers the INT8 error it targets.

Models here are small and seeded, with the outlier pattern planted explicitly (a few LayerNorm channels 40x the
rest, a depthwise conv with wide per-channel ranges): the claims on real pretrained weights are measured by
``bench/real_quant.py`` and the real-encoder quality test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.errors import DataError, UsageError
from edgeq.outliers import (
    BiasCorrectionConfig,
    EmbeddingQuantConfig,
    OutlierConfig,
    SmoothQuantConfig,
    correct_bias,
    prepare_for_int8,
    quantize_embeddings,
    smooth_quant,
)
from edgeq.outliers.bias_correction import per_channel_int8
from edgeq.outliers.smoothquant import fake_int8


class Tiny(nn.Module):
    """Embedding -> LayerNorm with 3 outlier channels -> (q, k) sharing the input -> GELU -> o."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.e = nn.Embedding(1200, 32)
        self.ln = nn.LayerNorm(32)
        self.q, self.k = nn.Linear(32, 64), nn.Linear(32, 64)
        self.o = nn.Linear(64, 8)
        with torch.no_grad():
            self.ln.weight[:3] = 40.0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.e(ids))
        return self.o(nn.functional.gelu(self.q(h)) * self.k(h))


def _ids(n: int = 24) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(0).integers(0, 1200, (n, 16)).astype(np.int64)}


def _int8_error(model: nn.Module, ids: torch.Tensor) -> float:
    """Relative output error when every Linear sees per-tensor INT8 inputs and per-channel INT8 weights."""
    def pre(m: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (fake_int8(args[0], "per_tensor"),)

    with torch.no_grad():
        ref = model(ids)
        saved = {}
        for n, m in model.named_modules():
            if isinstance(m, nn.Linear):
                saved[n] = m.weight.clone()
                m.weight.copy_(per_channel_int8(m.weight))
        hooks = [m.register_forward_pre_hook(pre) for m in model.modules() if isinstance(m, nn.Linear)]
        out = model(ids)
        for h in hooks:
            h.remove()
        for n, m in model.named_modules():
            if n in saved:
                m.weight.copy_(saved[n])
    return float((out - ref).norm() / ref.norm())


def test_smoothquant_is_exact_in_float_and_cuts_int8_error() -> None:
    model, data = Tiny().eval(), _ids()
    ids = torch.from_numpy(data["ids"])
    with torch.no_grad():
        ref = model(ids)
    before = _int8_error(model, ids)
    smoothed, log = smooth_quant(model, data)
    with torch.no_grad():
        assert torch.allclose(smoothed(ids), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    qk = next(e for e in log if e["layers"] == ["q", "k"])  # grouped: both read the same LayerNorm output
    assert qk["alpha"] > 0 and qk["outlier_ratio"] > 10 and qk["error_after"] < qk["error_before"]
    assert _int8_error(smoothed, ids) < 0.5 * before


def test_smoothquant_leaves_layers_without_outliers_alone() -> None:
    model = nn.Sequential(nn.Linear(16, 16)).eval()
    x = {"x": np.random.default_rng(1).normal(size=(32, 16)).astype(np.float32)}
    _, log = smooth_quant(model, x, SmoothQuantConfig(min_gain=0.5))
    assert log[0]["alpha"] == 0.0 and isinstance(model[0], nn.Linear)


def test_configs_reject_bad_values() -> None:
    with pytest.raises(UsageError):
        SmoothQuantConfig(alphas=(1.5,))
    with pytest.raises(UsageError):
        SmoothQuantConfig(activation="per_block")
    with pytest.raises(UsageError):
        EmbeddingQuantConfig(min_rows=0)
    with pytest.raises(UsageError):
        BiasCorrectionConfig(calibration_samples=0)
    with pytest.raises(DataError):
        smooth_quant(Tiny().eval(), {"ids": np.zeros((0, 16), dtype=np.int64)})


def test_embedding_tables_become_int8_per_row() -> None:
    model = Tiny().eval()
    w = model.e.weight.detach().clone()
    q, log = quantize_embeddings(model, EmbeddingQuantConfig(min_rows=1000))
    assert log == [{"table": "e", "rows": 1200, "dim": 32, "relative_error": log[0]["relative_error"]}]
    assert 0 < log[0]["relative_error"] < 0.01
    assert q.e.qweight.dtype == torch.int8 and q.e.qweight.shape == (1200, 32) and q.e.scale.shape == (1200, 1)
    rows = q.e(torch.tensor([[0, 5, 1199]]))[0]
    assert torch.allclose(rows, w[[0, 5, 1199]], atol=float(w.abs().max()) / 127)
    _, none = quantize_embeddings(Tiny().eval(), EmbeddingQuantConfig(min_rows=5000))
    assert none == []


def test_quantized_embedding_exports_to_onnx_as_an_int8_gather(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnx
    import onnxruntime as ort

    model, _ = quantize_embeddings(Tiny().eval())
    ids = torch.from_numpy(_ids(1)["ids"])
    prog = torch.onnx.export(model, (ids,), dynamo=True, input_names=["ids"], optimize=True)
    prog.save(str(tmp_path / "m.onnx"))
    m = onnx.load(str(tmp_path / "m.onnx"))
    int8_tables = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims[0] == 1200]
    assert len(int8_tables) == 1 and any(n.op_type == "Gather" for n in m.graph.node)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"ids": ids.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(ids).numpy(), rtol=1e-4, atol=1e-4)


class DW(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.pw = nn.Conv2d(16, 8, 1)
        with torch.no_grad():  # depthwise channels whose ranges differ by 100x, as in real mobile nets
            self.dw.weight.mul_(torch.logspace(-1, 1, 16).reshape(16, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(torch.relu(self.dw(torch.relu(self.stem(x)))))


def test_bias_correction_removes_the_mean_shift_of_weight_rounding() -> None:
    import copy

    x = np.random.default_rng(0).normal(1.0, 1.0, size=(16, 3, 12, 12)).astype(np.float32)
    original = DW().eval()
    with torch.no_grad():
        xin = torch.relu(original.stem(torch.from_numpy(x)))
        float_out = original.dw(xin)

    def mean_shift(m: nn.Module) -> float:
        """Per-channel mean of (INT8-weight output - float output) of the depthwise conv."""
        with torch.no_grad():
            q = nn.functional.conv2d(xin, per_channel_int8(m.dw.weight), m.dw.bias, padding=1, groups=16)
            return float((q - float_out).mean((0, 2, 3)).abs().max())

    before = mean_shift(original)
    corrected, log = correct_bias(copy.deepcopy(original), {"x": x}, BiasCorrectionConfig(min_relative_shift=0.0))
    assert {e["layer"] for e in log} == {"stem", "dw", "pw"}
    assert before > 0 and mean_shift(corrected) < 0.2 * before


def test_prepare_for_int8_logs_each_method() -> None:
    log: dict[str, object] = {}
    prepare_for_int8(Tiny().eval(), _ids(), OutlierConfig(), log=log)
    assert set(log) == {"cle", "weight_rounding", "bias_correction", "smoothquant", "embeddings"}
    assert log["bias_correction"] == []  # no convolutions: nothing to correct
    assert log["cle"] == []  # no conv -> activation -> conv pairs: nothing to equalize
    assert log["weight_rounding"] == []  # no convolutions (Linear rounding is opt-in)
