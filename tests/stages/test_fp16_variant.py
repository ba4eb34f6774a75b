"""fp16-variant: a float16 candidate for GPU-delegate targets, validated like the INT8 model."""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.onnx.fp16 import convert_fp16
from edgeq.onnx.graph_util import run
from edgeq.pipeline.stage import get_stage
from edgeq.targets import load_target


def _init_types(path):  # type: ignore[no-untyped-def]
    return {onnx.TensorProto.DataType.Name(t.data_type) for t in onnx.load(str(path)).graph.initializer}


def test_convert_fp16_halves_weights_keeps_io(digits_fp32, tmp_path):  # type: ignore[no-untyped-def]
    src, calib = digits_fp32
    dst = tmp_path / "m.fp16.onnx"
    info = convert_fp16(src, dst)
    assert "FLOAT16" in _init_types(dst) and "FLOAT" not in _init_types(dst)
    assert "FLOAT" in _init_types(src)
    m = onnx.load(str(dst))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay float32
    assert info["casts_added"] == 2 and info["bytes_after"] < 0.65 * info["bytes_before"]
    feeds = {"image": calib.inputs["image"][:16]}
    ref, got = run(src, feeds)[0], run(dst, feeds)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=0.05 * np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_in_export_is_a_validated_candidate(android_export):  # type: ignore[no-untyped-def]
    art = android_export.artifact("onnx-fp16")
    assert art.role == "candidate" and art.precision == "fp16" and art.path == "model.fp16.onnx"
    assert art.bytes < android_export.artifact("onnx-fp32").bytes * 0.65
    assert art.validations, "the fp16 candidate must be validated"
    m = art.validations[0].metrics
    assert m["cosine_min"] > 0.999 and art.validations[0].budget_check["passed"]
    assert (android_export.output / art.path).stat().st_mode & 0o044  # readable like the other artifacts


def test_only_with_gpu_delegate():  # type: ignore[no-untyped-def]
    spec = get_stage("fp16-variant")
    assert spec.phase == "artifact"
    assert spec.applies_to(load_target("android-arm64")) and spec.applies_to(load_target("ios-arm64"))
    assert not spec.applies_to(load_target("raspberry-pi-4"))
