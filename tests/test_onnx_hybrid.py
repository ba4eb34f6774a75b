"""Hybrid INT8 for ONNX (edgeq.onnx.hybrid): static QDQ convolutions, dynamic INT8 linear layers, and the search
stage that tries it on graphs with both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.config import Budget, QuantOptions, SearchOptions
from edgeq.data import Dataset


@pytest.fixture(scope="module")
def conv_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(),
                          nn.Linear(16, 10)).eval()
    path = tmp_path_factory.mktemp("hybrid") / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), input_names=["image"], output_names=["logits"],
                      dynamo=True, opset_version=18, verbose=False)
    x = np.random.default_rng(0).standard_normal((24, 3, 8, 8)).astype(np.float32)
    return path, Dataset({"image": x})


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])


def test_gemm_rewrite_is_the_same_function(conv_classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from edgeq.onnx.hybrid import gemms_as_matmuls, linear_nodes

    src, data = conv_classifier
    model = onnx.load(str(src))
    assert sum(n.op_type == "Gemm" for n in model.graph.node) == 2
    assert gemms_as_matmuls(model) == 2
    assert not any(n.op_type == "Gemm" for n in model.graph.node)
    matmuls, adds = linear_nodes(model)
    assert len(matmuls) == 2 and len(adds) == 2
    onnx.save(model, str(tmp_path / "matmul.onnx"))
    x = data.inputs["image"][:8]
    np.testing.assert_allclose(_run(tmp_path / "matmul.onnx", x), _run(src, x), rtol=1e-5, atol=1e-5)


def test_hybrid_model_has_static_convs_and_dynamic_linears(conv_classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from edgeq.onnx.hybrid import has_convs_and_linears
    from edgeq.onnx.quantize import quantize_onnx_hybrid

    src, data = conv_classifier
    assert has_convs_and_linears(src)
    dst = tmp_path / "hybrid.onnx"
    opts = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                        reduce_range=False, dynamic_linears=True)
    info = quantize_onnx_hybrid(src, dst, data, opts)
    assert info["method"] == "hybrid" and len(info["dynamic_linears"]) == 2 and info["gemms_rewritten"] == 2
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 2
    conv_inputs = {i for n in onnx.load(str(dst)).graph.node if n.op_type == "Conv" for i in n.input}
    assert any(i.endswith("_DequantizeLinear_Output") for i in conv_inputs)  # the convs stay static QDQ
    x = data.inputs["image"]
    ref, got = _run(src, x), _run(dst, x)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.mean() > 0.99, cos.mean()


def test_search_tries_the_hybrid_on_a_conv_net_with_linears(conv_classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from edgeq.search.evaluate import EvalData
    from edgeq.search.search import LadderStart, search_onnx

    src, data = conv_classifier
    inputs = tmp_path / "inputs.npz"
    x = data.inputs["image"][:8]
    np.savez(inputs, image=x)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    ref = {"logits": np.concatenate([sess.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])}
    base = QuantOptions(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=False,
                        calibration="minmax")
    res = search_onnx(EvalData(src, data, inputs, ref), LadderStart(base),
                      Budget(min_sqnr=200.0),  # unreachable: every stage runs
                      SearchOptions(max_trials=4, calibrations=("minmax",), max_seconds=1e9), tmp_path / "search")
    stages = [t.stage for t in res.trials]
    assert stages[:2] == ["baseline", "hybrid"], stages
    hybrid = res.trials[1]
    assert hybrid.config.hybrid and "dynamic INT8 linears" in hybrid.config.label()
    assert hybrid.metrics is not None and hybrid.error is None
    assert hybrid.bias_correction is not None  # its static convolutions get the first model's correction


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_export_with_dynamic_linears_ships_the_hybrid_in_both_formats(tmp_path: Path) -> None:
    """``QuantOptions(dynamic_linears=True)`` from the Python API: the first INT8 model of each format is the hybrid
    (not silently the static scheme), and the manifest says so."""
    import edgeq

    fix = Path(__file__).resolve().parent / "fixture_models.py"
    calib = tmp_path / "calib.npz"
    np.savez(calib, image=np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32))
    res = edgeq.export(f"{fix}:tiny_cnn", calib=str(calib), output=tmp_path / "out", formats=("onnx", "pte"),
                       quant=QuantOptions(dynamic_linears=True), search=SearchOptions(mode="off"), outliers="off")
    onnx_art = res.artifact("onnx-int8-static")
    assert onnx_art.quantization["method"] == "hybrid" and onnx_art.quantization["dynamic_linears"]
    assert onnx_art.details["op_counts"].get("DynamicQuantizeLinear", 0) == 1
    pte_art = res.artifact("pte-int8-static")
    assert pte_art.quantization["dynamic_linears"] is True
