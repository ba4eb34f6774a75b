"""What ONNX Runtime's CPU EP makes of edgeq's static QDQ models: which Conv / Clip / Add become integer kernels.

A mobile-CNN block in miniature (stem conv + ReLU6, depthwise conv + ReLU6, linear 1x1 projection read twice — by
the next conv and by a residual Add — pool, classifier). The structure of the *optimized* graph (ORT's
``optimized_model_filepath``) is what decides INT8 speed, so it is checked instead of timing:

- 8-bit activations are asymmetric, so ORT's ClipQuantFusion drops every ReLU6 Clip (a [0, 6] range is
  representable only with a zero point at the range's end) — on every platform;
- the x86 scheme (uint8 activations) leaves no float Conv or Add: all QLinearConv / QLinearAdd;
- int8 activations on x86 leave float Convs behind (ORT fuses int8-activation QDQ only on ARM and rewrites an
  int8 Q->DQ pair to uint8 only when the Q has one consumer) — the reason x86-64.toml keeps U8S8 with VNNI.
"""

from __future__ import annotations

import collections
import platform
from pathlib import Path

import numpy as np
import pytest

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.onnx.quantize import quantize_onnx_static

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _tiny_mobile_cnn() -> object:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.project = nn.Conv2d(8, 8, 1)
            self.expand = nn.Conv2d(8, 16, 1)
            self.dw2 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.project2 = nn.Conv2d(16, 8, 1)
            self.dw3 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
            self.project3 = nn.Conv2d(8, 12, 1)  # a second spatial size among the linear convs
            self.head = nn.Linear(12, 5)
            self.act = nn.ReLU6()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(self.stem(x))
            p = self.project(self.act(self.dw(x)))  # linear bottleneck, read twice below
            y = self.project2(self.act(self.dw2(self.act(self.expand(p))))) + p
            z = self.project3(self.act(self.dw3(y)))
            return self.head(z.mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Block().eval()


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    import torch

    d = tmp_path_factory.mktemp("fusion")
    path = d / "cnn.onnx"
    model = _tiny_mobile_cnn()
    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=True,
                      opset_version=18, verbose=False)
    rng = np.random.default_rng(0)
    calib = Dataset({"image": rng.standard_normal((16, 3, 16, 16)).astype(np.float32)})
    return path, calib


def _optimized_ops(path: Path, tmp: Path) -> collections.Counter[str]:
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(tmp / (path.stem + ".opt.onnx"))
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def _quantize(src: Path, calib: Dataset, dst: Path, activation_type: str) -> dict[str, object]:
    opts = QuantOptions(activation_type=activation_type, weight_type="int8", per_channel=True,  # type: ignore[arg-type]
                        reduce_range=False, calibration="minmax")
    return quantize_onnx_static(src, dst, calib, opts)


def _quantized_ops(float_onnx: tuple[Path, Dataset], tmp_path: Path, activation_type: str) -> collections.Counter[str]:
    """Quantize the fixture CNN with 8-bit ACTIVATION_TYPE and return ORT's optimized graph's op counts."""
    src, calib = float_onnx
    out = tmp_path / f"{activation_type}.onnx"
    _quantize(src, calib, out, activation_type)
    return _optimized_ops(out, tmp_path)


@pytest.mark.parametrize("activation_type", ["int8", "uint8"])
def test_8bit_activations_are_asymmetric_and_relu6_clips_fold(float_onnx, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              activation_type: str) -> None:
    src, calib = float_onnx
    out = tmp_path / f"{activation_type}.onnx"
    info = _quantize(src, calib, out, activation_type)
    assert info["activation_symmetric"] is False
    ops = _optimized_ops(out, tmp_path)
    assert ops["Clip"] == 0, f"a ReLU6 Clip stayed float between DequantizeLinear and QuantizeLinear: {dict(ops)}"


@pytest.mark.skipif(not X86, reason="which QDQ groups fuse depends on ORT's x86 kernel set")
def test_x86_uint8_activations_leave_no_float_conv_or_add(float_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ops = _quantized_ops(float_onnx, tmp_path, "uint8")
    assert ops["Conv"] == 0 and ops["Add"] == 0, dict(ops)
    assert ops["QLinearConv"] == 8 and ops["QLinearAdd"] == 1, dict(ops)


@pytest.mark.skipif(not X86, reason="ORT fuses int8-activation QDQ on ARM")
def test_x86_int8_activations_leave_float_convs(float_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Why x86-64.toml says U8S8 even with VNNI: should ORT start fusing these, this fails and the rule can go."""
    ops = _quantized_ops(float_onnx, tmp_path, "int8")
    assert ops["Conv"] + ops["Add"] > 0, dict(ops)


def test_symmetric_int16_is_unchanged() -> None:
    from edgeq.onnx.quantize import activation_symmetric

    assert activation_symmetric("int16") and not activation_symmetric("int8") and not activation_symmetric("uint8")


def test_bias_correction_moves_linear_conv_means_to_float(float_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Sequential empirical bias correction: only the unclamped convs' INT32 biases change, their per-channel
    output means on the calibration data move toward the float model's, and ORT fuses the graph as before."""
    import onnx

    from edgeq.onnx.bias_correct import _channel_means, correct_qdq_biases, linear_convs

    src, calib = float_onnx
    out = tmp_path / "u8s8.onnx"
    _quantize(src, calib, out, "uint8")
    before = onnx.load(str(out))
    fl = onnx.load(str(src))
    convs = linear_convs(before, fl)
    assert len(convs) == 3  # the projections; stem, dw, expand, dw2 and dw3 are ReLU6-clamped
    feeds = [{"image": calib.inputs["image"][i:i + 1]} for i in range(len(calib))]  # exported with batch 1
    names = [c[0] for c in convs]
    ref = _channel_means(fl, names, feeds)
    err_before = {n: np.abs(v - ref[n]).mean() for n, v in _channel_means(before, names, feeds).items()}
    ops_before = _optimized_ops(out, tmp_path)
    rec = correct_qdq_biases(src, out, calib)
    after = onnx.load(str(out))
    assert rec["convs"] == 3 and rec["samples"] == len(calib)
    err_after = {n: np.abs(v - ref[n]).mean() for n, v in _channel_means(after, names, feeds).items()}
    assert all(err_after[n] < err_before[n] for n in names), (err_before, err_after)
    changed = {a.name for a, b in zip(before.graph.initializer, after.graph.initializer, strict=True) if a != b}
    assert changed and changed <= {c[1] for c in convs}  # bias integers only
    assert _optimized_ops(out, tmp_path) == ops_before


def test_search_trials_get_the_bias_correction_of_the_first_model(float_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A static 8-bit search trial is corrected like the first model (edgeq.backends.onnx): its biases equal
    quantize + correct_qdq_biases of the same settings, and the trial record says how many convs moved."""
    import onnx

    from edgeq.config import Budget, SearchOptions
    from edgeq.onnx.bias_correct import correct_qdq_biases
    from edgeq.search.evaluate import EvalData
    from edgeq.search.search import LadderStart, search_onnx

    src, calib = float_onnx
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=calib.inputs["image"][:4])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    ref = {"logits": np.concatenate([sess.run(None, {"image": calib.inputs["image"][i:i + 1]})[0] for i in range(4)])}
    base = QuantOptions(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=False,
                        calibration="minmax")
    res = search_onnx(EvalData(src, calib, inputs, ref), LadderStart(base), Budget(min_cosine=0.999999),
                      SearchOptions(max_trials=1), tmp_path / "search")
    trial = res.trials[0]
    assert trial.bias_correction is not None and trial.bias_correction["convs"] == 3
    assert trial.to_dict()["bias_correction_convs"] == 3
    direct = tmp_path / "direct.onnx"
    _quantize(src, calib, direct, "uint8")
    correct_qdq_biases(src, direct, calib)
    assert trial.path is not None
    got = {t.name: t for t in onnx.load(str(trial.path)).graph.initializer}
    want = {t.name: t for t in onnx.load(str(direct)).graph.initializer}
    assert got.keys() == want.keys() and all(got[k] == want[k] for k in want)


def test_global_average_pool_is_not_a_layernorm_pattern(float_onnx) -> None:  # type: ignore[no-untyped-def]
    """The CNN's ReduceMean pool feeding the classifier must not send the search to 'keep LayerNorm float'."""
    import onnx

    from edgeq.search.patterns import fragile_nodes

    src, _ = float_onnx
    assert any(n.op_type == "ReduceMean" for n in onnx.load(str(src)).graph.node)
    assert fragile_nodes(src)["layernorm"] == []


@pytest.mark.skipif(not X86, reason="which QDQ groups fuse depends on ORT's x86 kernel set")
def test_graph_outputs_stay_float_and_the_classifier_stays_integer(float_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The logits are not put on an 8-bit grid (no Q/DQ pair on the graph output, its scale and zero point
    gone), they match the float model more closely than the 8-bit ones did, and ORT still runs the classifier as
    an integer QGemm with float output."""
    import onnx
    import onnxruntime as ort

    from edgeq.onnx.quantize import float_graph_outputs

    src, calib = float_onnx
    out = tmp_path / "u8s8.onnx"
    info = _quantize(src, calib, out, "uint8")
    assert info["float_outputs"] == ["logits"]
    g = onnx.load(str(out)).graph
    producer = {o: n for n in g.node for o in n.output}
    assert producer["logits"].op_type == "Gemm"
    assert not any(i.name.startswith("logits") for i in g.initializer)
    assert float_graph_outputs(out) == []  # idempotent
    ops = _optimized_ops(out, tmp_path)
    assert ops["QGemm"] == 1 and ops["Gemm"] == 0, dict(ops)

    # the same model with the output pair put back: its logits are on the 8-bit grid, farther from float
    def run(path: Path) -> np.ndarray:  # the fixture's graph has batch 1
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(None, {"image": calib.inputs["image"][i:i + 1]})[0] for i in range(16)])

    ref, got = run(src), run(out)
    grid = tmp_path / "grid.onnx"
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgeq.onnx.quantize import reader_class

    quantize_static(str(src), str(grid), reader_class()(calib.head(16)), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    assert np.abs(got - ref).mean() < np.abs(run(grid) - ref).mean()
