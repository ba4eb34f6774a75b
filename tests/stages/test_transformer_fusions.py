"""transformer-fusions: fuses attention/LayerNorm/GELU on a transformer, leaves a CNN alone."""

from __future__ import annotations

import shutil

import numpy as np

from edgeq.onnx.graph_util import op_counts, run
from edgeq.pipeline.stage import get_stage


def _ops(path):  # type: ignore[no-untyped-def]
    import onnx

    return op_counts(onnx.load(str(path)))


def test_fuses_transformer_and_keeps_outputs(encoder_fp32, make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    src, calib = encoder_fp32
    work = tmp_path / "model.pre_quant.onnx"
    shutil.copyfile(src, work)
    ctx = make_ctx("raspberry-pi-5", work, calib, tmp_path)
    spec = get_stage("transformer-fusions")
    assert spec.phase == "pre_quant" and spec.kind == "transform" and spec.formats == ("onnx",)

    result = spec.run(ctx)
    assert result.state is not None
    ctx = result.state

    assert result.changed, result.summary
    assert ctx.model_path != work and ctx.model_path.is_file()
    before, after = _ops(work), _ops(ctx.model_path)
    assert after.get("SkipLayerNormalization", 0) >= 2 and "LayerNormalization" not in after
    assert after.get("BiasGelu", 0) + after.get("Gelu", 0) + after.get("FastGelu", 0) == 2 and "Erf" not in after
    assert after.get("Attention", 0) >= 1
    assert sum(after.values()) < sum(before.values())
    assert result.details["fused"]["SkipLayerNormalization"] == after["SkipLayerNormalization"]
    feeds = dict(calib.inputs)
    np.testing.assert_allclose(run(ctx.model_path, feeds)[0], run(work, feeds)[0], rtol=1e-4, atol=1e-4)


def test_skips_a_cnn(digits_fp32, make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    src, calib = digits_fp32
    ctx = make_ctx("raspberry-pi-5", src, calib, tmp_path)
    result = get_stage("transformer-fusions").run(ctx)
    assert not result.changed and result.details == {"transformer": False}
    assert ctx.model_path == src
