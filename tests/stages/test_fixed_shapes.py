"""fixed-shapes: static input/output shapes for NNAPI/CoreML targets; same outputs; shipped INT8 inherits it."""

from __future__ import annotations

import shutil

import numpy as np
import onnx

from edgeq.onnx.graph_util import run
from edgeq.pipeline.pipeline import Pipeline
from edgeq.pipeline.stage import get_stage
from edgeq.stages.fixed_shapes import input_shapes
from edgeq.targets import load_target


def _out_shape(path):  # type: ignore[no-untyped-def]
    o = onnx.load(str(path)).graph.output[0]
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in o.type.tensor_type.shape.dim]


def test_fixes_batch_and_keeps_outputs(digits_fp32, make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    src, calib = digits_fp32
    work = tmp_path / "model.pre_quant.onnx"
    shutil.copyfile(src, work)
    ctx = make_ctx("android-arm64", work, calib, tmp_path)
    assert isinstance(input_shapes(onnx.load(str(work)))["image"][0], str)  # dynamic batch before

    result = get_stage("fixed-shapes").run(ctx)
    assert result.changed and result.state is not None
    ctx = result.state
    assert input_shapes(onnx.load(str(ctx.model_path)))["image"] == [1, 1, 8, 8]
    assert _out_shape(ctx.model_path) == [1, 10]
    assert ctx.fixed_shapes == {"image": [1, 1, 8, 8]}
    assert work.is_file() and isinstance(input_shapes(onnx.load(str(work)))["image"][0], str)  # input untouched
    feeds = {"image": calib.inputs["image"][:8]}
    np.testing.assert_allclose(run(ctx.model_path, feeds)[0], run(work, feeds)[0], rtol=0, atol=0)


def test_token_ids_take_sequence_length_from_data(encoder_fp32, make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    src, calib = encoder_fp32
    ctx = make_ctx("ios-arm64", src, calib, tmp_path)
    result = get_stage("fixed-shapes").run(ctx)
    assert result.changed and result.state is not None
    ctx = result.state
    assert input_shapes(onnx.load(str(ctx.model_path)))["input_ids"] == [1, 16]
    np.testing.assert_allclose(run(ctx.model_path, dict(calib.inputs))[0], run(src, dict(calib.inputs))[0],
                               rtol=0, atol=1e-6)  # static shapes may pick another (equally exact) kernel


def test_only_for_static_shape_accelerators():  # type: ignore[no-untyped-def]
    for name, expected in [("android-arm64", True), ("ios-arm64", True), ("raspberry-pi-5", False)]:
        t = load_target(name)
        names = [p.name for p in Pipeline.for_target(t).applicable(t, "pre_quant", "onnx")]
        assert ("fixed-shapes" in names) == expected, name
    assert not get_stage("fixed-shapes").applies_to(load_target("x86-64"))


def test_shipped_int8_is_fixed_float_baseline_is_not(android_export):  # type: ignore[no-untyped-def]
    out = android_export.output
    assert input_shapes(onnx.load(str(out / "model.int8.onnx")))["image"] == [1, 1, 8, 8]
    assert input_shapes(onnx.load(str(out / "model.fp16.onnx")))["image"] == [1, 1, 8, 8]
    assert isinstance(input_shapes(onnx.load(str(out / "model.fp32.onnx")))["image"][0], str)
    logged = [p for p in android_export.manifest["passes"] if p["name"] == "fixed-shapes"]
    assert len(logged) == 1 and logged[0]["changed"] and logged[0]["stage"] == "pre_quant"


def test_after_fusions_contrib_ops(encoder_fp32, make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    """com.microsoft ops defeat ONNX shape inference: output shapes then come from running the graph."""
    src, calib = encoder_fp32
    work = tmp_path / "model.pre_quant.onnx"
    shutil.copyfile(src, work)
    ctx = make_ctx("android-arm64", work, calib, tmp_path)
    fused_res = get_stage("transformer-fusions").run(ctx)
    assert fused_res.changed and fused_res.state is not None
    ctx = fused_res.state
    fused = ctx.model_path
    assert any(n.domain == "com.microsoft" for n in onnx.load(str(fused)).graph.node)
    fixed_res = get_stage("fixed-shapes").run(ctx)
    assert fixed_res.changed and fixed_res.state is not None
    ctx = fixed_res.state
    assert _out_shape(ctx.model_path) == [1, 4]
    np.testing.assert_allclose(run(ctx.model_path, dict(calib.inputs))[0], run(src, dict(calib.inputs))[0],
                               rtol=1e-4, atol=1e-4)
