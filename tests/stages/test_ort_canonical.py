""".ort canonical bytes: the same .onnx always converts to the same .ort, which ORT runs exactly like its own output.

ORT's converter writes the kernel type string resolver in absl hash-map order, so its raw bytes differ per
conversion; edgeq.onnx.ort_canonical rebuilds that subtree (see its docstring). A tiny Conv/MaxPool/Gemm graph
in fp32 and QDQ INT8, converted for ARM and for x86-64, keeps these tests fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import edgeq.stages.ort_format as ort_format
from edgeq.errors import ArtifactError
from edgeq.onnx.ort_canonical import canonical_bytes, canonicalize_ort_file, read_session
from edgeq.stages.ort_format import convert_to_ort


def _tiny_cnn(folder: Path) -> tuple[Path, Path]:
    """(fp32 .onnx, QDQ INT8 .onnx) of Conv -> Relu -> MaxPool -> Flatten -> Gemm on a 1x3x8x8 input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    rng = np.random.default_rng(0)
    weights = {"w": (8, 3, 3, 3), "b": (8,), "fw": (128, 10), "fb": (10,)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in weights.items()]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32, int8 = folder / "tiny.fp32.onnx", folder / "tiny.int8.onnx"
    onnx.save(model, fp32)

    class Calib(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(str(fp32), str(int8), Calib(), quant_format=QuantFormat.QDQ)
    return fp32, int8


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    fp32, int8 = _tiny_cnn(tmp_path_factory.mktemp("tiny_cnn"))
    return {"fp32": fp32, "int8": int8}


def _convert(model: Path, outdir: Path, arm: bool) -> Path:
    outdir.mkdir()
    (ort_file,), _config = convert_to_ort([model], outdir, arm=arm)
    return ort_file


def _run(ort_file: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(ort_file), so, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("arm", [True, False], ids=["arm", "x86"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_same_model_same_bytes_same_outputs(tiny_models: dict[str, Path], precision: str, arm: bool,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_models[precision]
    first, second = _convert(model, tmp_path / "a", arm), _convert(model, tmp_path / "b", arm)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert first.read_bytes()[4:8] == b"ORTM" and canonical_bytes(first.read_bytes()) == first.read_bytes()

    monkeypatch.setattr(ort_format, "canonicalize_ort_file", lambda path: None)  # ORT's own bytes, as converted
    raw = _convert(model, tmp_path / "raw", arm)
    assert canonical_bytes(raw.read_bytes()) == first.read_bytes()
    assert read_session(raw.read_bytes()).resolver == read_session(first.read_bytes()).resolver
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert np.array_equal(_run(first, x), _run(raw, x))


def test_unreadable_ort_is_refused_and_left_untouched(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no ORTM"):
        canonical_bytes(b"\x00" * 64)
    good = _convert(tiny_models["int8"], tmp_path / "a", arm=True).read_bytes()
    broken = tmp_path / "broken.ort"
    broken.write_bytes(good[:200])  # the identifier survives, the Model it points to does not
    with pytest.raises(ArtifactError):
        canonicalize_ort_file(broken)
    assert broken.read_bytes() == good[:200] and [p.name for p in tmp_path.iterdir() if p.is_file()] == ["broken.ort"]
