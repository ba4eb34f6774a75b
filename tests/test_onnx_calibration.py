"""Calibration and per-node measurement on a ReLU6 mobile-CNN block: entropy ranges that are entropy ranges, the
calibration cache the search's trials share, the sensitivity reading of folded clamps, bias correction's prefix
graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.onnx.quantize import quantize_onnx_static


@pytest.fixture(scope="module")
def relu6_cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.ReLU6(), nn.Conv2d(8, 16, 1), nn.Flatten(), nn.Linear(16 * 64, 10)).eval()
    path = tmp_path_factory.mktemp("calibration") / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), input_names=["image"], output_names=["logits"],
                      dynamo=True, opset_version=18, verbose=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 8, 8)).astype(np.float32)
    x[::8] *= 8.0  # a few high-energy inputs: long activation tails for a KL threshold to clip
    return path, Dataset({"image": x})


def _opts(calibration: str) -> QuantOptions:
    return QuantOptions(calibration=calibration, per_channel=True, activation_type="uint8",  # type: ignore[arg-type]
                        weight_type="int8", reduce_range=False)


def _activation_scales(path: Path) -> dict[str, float]:
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in g.node if n.op_type == "QuantizeLinear"}


def test_entropy_calibration_clips_where_minmax_does_not(relu6_cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ORT's quantize_static runs its entropy calibrator with as many histogram bins as quantized bins, so its
    'entropy' ranges are the full min-max ranges; edgeq's entropy must actually choose thresholds."""
    src, calib = relu6_cnn
    quantize_onnx_static(src, tmp_path / "minmax.onnx", calib, _opts("minmax"))
    info = quantize_onnx_static(src, tmp_path / "entropy.onnx", calib, _opts("entropy"))
    assert info["calibration"] == "entropy"
    mm, ent = _activation_scales(tmp_path / "minmax.onnx"), _activation_scales(tmp_path / "entropy.onnx")
    assert mm.keys() == ent.keys()
    assert all(ent[t] <= mm[t] * (1 + 1e-6) for t in mm), (mm, ent)  # a KL threshold lies inside the range
    assert any(ent[t] < 0.95 * mm[t] for t in mm), (mm, ent)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_calibration_cache_calibrates_once(relu6_cnn, tmp_path: Path, method: str) -> None:  # type: ignore[no-untyped-def]
    """The second quantization with the same cache reads no calibration sample and gets the same ranges, also
    with different weight settings (the search's per-channel / excluded-node / 16-bit trials)."""
    src, calib = relu6_cnn
    cache = tmp_path / f"calibration.{method}.json"
    reads: list[int] = []
    quantize_onnx_static(src, tmp_path / "a.onnx", calib, _opts(method), on_sample=lambda: reads.append(1),
                         calibration_cache=cache)
    first = len(reads)
    assert first == len(calib) and cache.is_file()
    opts = QuantOptions(calibration=method, per_channel=False, activation_type="uint8",  # type: ignore[arg-type]
                        weight_type="int8", reduce_range=False)
    quantize_onnx_static(src, tmp_path / "b.onnx", calib, opts, on_sample=lambda: reads.append(1),
                         calibration_cache=cache)
    assert len(reads) == first
    assert _activation_scales(tmp_path / "a.onnx") == _activation_scales(tmp_path / "b.onnx")


def test_sensitivity_reads_folded_relu6_after_the_clamp(relu6_cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ORT folds each ReLU6 into its Conv (the conv writes the Clip's tensor, quantized to [0, 6]); the Q/DQ error
    of that tensor is measured on the clamped values, and the Clip's input error is its conv's inputs' — not the
    ReLU6 itself counted as quantization noise (which ranked every Clip first at ~0 dB)."""
    from edgeq.search.sensitivity import onnx_sensitivity

    src, calib = relu6_cnn
    qdq = tmp_path / "q.onnx"
    quantize_onnx_static(src, qdq, calib, _opts("minmax"))
    ranking = onnx_sensitivity(src, qdq, calib, max_samples=8)
    clips = [s for s in ranking if s.op_type == "Clip"]
    assert len(clips) == 2
    for s in clips:
        assert s.qdq_sqnr_db > 30.0, s  # 8-bit on [0, 6]: ~40 dB; the unclamped reading gave 1.6 dB
        # the input is read ahead of the folded conv (finite, and less noisy than the Clip's own output)
        assert np.isfinite(s.input_sqnr_db) and s.input_sqnr_db > s.xmodel_sqnr_db, s
        assert s.added_nsr < 0.01, s


def test_bias_correction_runs_only_the_nodes_a_conv_needs(relu6_cnn) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from edgeq.onnx.bias_correct import _upstream

    src, _ = relu6_cnn
    model = onnx.load(str(src))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    first = _upstream(model, [convs[0].output[0]])
    assert [n.op_type for n in first] == ["Conv"]
    last = _upstream(model, [convs[-1].output[0]])
    assert [n.op_type for n in last].count("Conv") == 3 and not any(n.op_type == "Gemm" for n in last)
    order = [n.name for n in model.graph.node]
    assert [n.name for n in last] == [n for n in order if n in {m.name for m in last}]  # graph order kept


@pytest.fixture(scope="module")
def denormal_tensor_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """Two MatMuls with a tensor between them whose largest magnitude is a deep float32 denormal (~1e-42), as in the
    relative-position encoder whose ONNX search trial died on it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w2")
    tiny = numpy_helper.from_array(np.array(1e-43, np.float32), "tiny")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Mul", ["h", "tiny"], ["t"]),
         helper.make_node("MatMul", ["t", "w2"], ["y"])], "denormal",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [w1, w2, tiny])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    path = tmp_path_factory.mktemp("denormal") / "denormal.onnx"
    onnx.save(model, str(path))
    return path, Dataset({"x": rng.standard_normal((16, 8)).astype(np.float32)})


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_survives_an_all_but_zero_tensor(denormal_tensor_model, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                method: str) -> None:
    """ORT's histogram collector cannot bin a tensor whose range is a deep denormal ("Too many bins for data
    range"); edgeq flushes such magnitudes to zero (edgeq.onnx.histogram_calib), and the model quantizes, with the
    normal tensors' ranges unchanged."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    src, data = denormal_tensor_model
    with pytest.raises(ValueError, match="Too many bins"):  # what ORT alone does with this tensor
        c = HistogramCollector(method, symmetric=False, num_bins=512, num_quantized_bins=128, percentile=99.999,
                               scenario="same")
        c.collect({"t": [np.array([1e-43, -3e-44, 0.0], np.float32)]})
    dst = tmp_path / f"{method}.onnx"
    quantize_onnx_static(src, dst, data, _opts(method))
    scales = _activation_scales(dst)
    assert scales and all(np.isfinite(v) for v in scales.values())
    assert scales.get("x", 0.0) > 1e-3  # the input's range is an ordinary one
