"""Learned rounding (edgeq.outliers.adaround): every weight lands on the INT8 grid onnxruntime derives from it,
the simulated INT8 output error drops below round-to-nearest's, and two runs give the same bytes.

The net is small and seeded, a mobile block: stem conv -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> 1x1 conv
with a residual -> pool -> Linear. Claims on real models are measured by ``bench/cnn_rounding.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.errors import UsageError
from edgeq.outliers import AdaRoundConfig, OutlierConfig, adaround, prepare_for_int8
from edgeq.outliers.int8_sim import simulated_int8_error
from edgeq.outliers.weight_rounding import fold_batchnorm
from edgeq.source import state_hash

CFG = AdaRoundConfig(calibration_samples=32, batch=8, passes=2, iterations=120, patches_per_batch=512)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 5)
        with torch.no_grad():  # BN scales two decades apart: the mobile-CNN pattern that makes INT8 hard
            self.bn0.weight.copy_(torch.logspace(np.log10(0.05), np.log10(3.0), 16)[torch.randperm(16)])
            self.bn1.weight.copy_(torch.logspace(np.log10(0.05), np.log10(3.0), 16)[torch.randperm(16)])
            self.bn0.bias.uniform_(-0.1, 0.3)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self.bn0(self.stem(x)))
        h = h + self.pw(nn.functional.relu6(self.bn1(self.dw(h))))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _calib(n: int = 32, seed: int = 0, size: int = 24) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(0, 1, (n, 3, size, size)).astype(np.float32)}


def _ort_weights(model: nn.Module, calib: dict[str, np.ndarray], tmp: Path) -> dict[tuple[int, ...], np.ndarray]:
    """The weights as onnxruntime's static QDQ quantization stores them (int8 x per-channel scale), by shape."""
    import onnx
    from onnx import numpy_helper

    from edgeq.config import QuantOptions
    from edgeq.data import Dataset
    from edgeq.onnx.quantize import quantize_onnx_static

    prog = torch.onnx.export(model, (torch.from_numpy(calib["x"][:1]),), dynamo=True, input_names=["x"],
                             optimize=True)
    prog.save(str(tmp / "f.onnx"))
    opts = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                        reduce_range=False)
    quantize_onnx_static(tmp / "f.onnx", tmp / "q.onnx", Dataset(dict(calib)), opts)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp / "q.onnx")).graph.initializer}
    out = {}
    for name, q in inits.items():
        if q.dtype == np.int8 and name.endswith("_quantized"):
            scale = inits[name.removesuffix("_quantized") + "_scale"]
            axis_shape = [-1 if i == (0 if q.ndim == 4 else q.ndim - 2) else 1 for i in range(q.ndim)]
            if q.ndim == 2 and scale.shape[0] != q.shape[0]:  # a transposed Gemm/MatMul weight: [in, out]
                axis_shape = [1, -1]
            out[q.shape] = q.astype(np.float32) * scale.reshape(axis_shape)
    return out


def test_learned_rounding_lands_on_the_grid_onnxruntime_derives(tmp_path: Path) -> None:
    calib = _calib()
    model, log = adaround(Block(), calib, CFG)
    assert log[0]["batchnorm_folded"] == 2
    ort = _ort_weights(model, calib, tmp_path)
    checked = 0
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            w = mod.weight.detach().numpy()
            q = ort.get(w.shape, ort.get(w.T.shape))
            assert q is not None, f"no INT8 initializer for {name} {w.shape}"
            q = q if q.shape == w.shape else q.T
            np.testing.assert_allclose(q, w, rtol=0, atol=1e-6 * float(np.abs(w).max()), err_msg=name)
            checked += 1
    assert checked == 4


def test_learned_rounding_cuts_the_output_error_below_nearest() -> None:
    """On the calibration rows, the whole model run as the static INT8 scheme (activations fake-quantized) errs
    less than with round-to-nearest weights; on held-out rows, so do the weights alone (float activations: the
    activation grids, recomputed per model, add noise of the same size as the gain on this tiny net)."""
    calib = _calib(128, size=16)
    original = Block()
    nearest = copy.deepcopy(original)
    fold_batchnorm(nearest, (torch.from_numpy(calib["x"][:1]),))  # simulated_int8_error rounds it to nearest
    learned, log = adaround(copy.deepcopy(original), calib, replace(CFG, calibration_samples=128, batch=16))
    assert log[1:] and all(e["error_vs_nearest"] < 1.0 for e in log[1:])
    assert simulated_int8_error(learned, original, calib, 128) < simulated_int8_error(nearest, original, calib, 128)
    held_out = _calib(64, seed=1, size=16)
    e_near = simulated_int8_error(nearest, original, held_out, 64, bits=0)
    e_learned = simulated_int8_error(learned, original, held_out, 64, bits=0)
    assert e_learned < 0.95 * e_near, (e_learned, e_near)


def test_learned_rounding_is_deterministic_and_reachable_from_prepare() -> None:
    calib = _calib()
    a, _ = adaround(Block(), calib, CFG)
    b, _ = adaround(Block(), calib, CFG)
    assert state_hash(a) == state_hash(b)
    log: dict[str, object] = {}
    c = prepare_for_int8(Block(), calib, OutlierConfig(smoothquant=None, weight_rounding=None, cle=None,
                                                       bias_correction=None, adaround=CFG), log=log)
    assert state_hash(c) == state_hash(a) and "adaround" in log and "weight_rounding" not in log


def test_config_rejects_bad_values() -> None:
    with pytest.raises(UsageError):
        AdaRoundConfig(iterations=0)
    with pytest.raises(UsageError):
        AdaRoundConfig(activation_bits=4)


def test_auto_rounding_keeps_the_preparation_with_the_lower_simulated_error() -> None:
    from edgeq.config import PipelineConfig
    from edgeq.prepare import conv_prepare
    from edgeq.progress import Progress

    calib = _calib(32, size=16)
    log: dict[str, Any] = {}
    conv_prepare(Block(), calib, "auto", Progress(enabled=False), log)
    errors = log["rounding"]["simulated_int8_error"]
    assert set(errors) == {"gptq", "adaround"} and log["rounding"]["picked"] == min(errors, key=errors.get)
    with pytest.raises(UsageError):
        PipelineConfig(model="m:f", calib="c.npz", output="o", rounding="bogus")  # type: ignore[arg-type]
