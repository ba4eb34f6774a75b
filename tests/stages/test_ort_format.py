"""ort-format: .ort files that ORT loads with the same outputs, and the reduced-build operator config."""

from __future__ import annotations

import numpy as np

from edgeq.hashing import sha256_file
from edgeq.pipeline.stage import get_stage
from edgeq.stages.ort_format import CONFIG_NAME, convert_to_ort, required_ops
from edgeq.targets import load_target


def test_ort_and_config_in_export(android_export):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    out = android_export.output
    art = android_export.artifact("ort-int8-static")
    assert art.role == "auxiliary" and art.format == "ort" and art.path == "model.int8.ort"
    assert (out / art.path).read_bytes()[4:8] == b"ORTM"  # ORT-format flatbuffer identifier
    assert not art.validations  # auxiliary: same graph as the validated .onnx
    cfg = android_export.artifact("ort-required-operators")
    assert cfg.path == CONFIG_NAME and (out / CONFIG_NAME).is_file()
    ops = required_ops(out / CONFIG_NAME)
    # ARM conversion allows QDQ -> QLinear fusions: the INT8 kernels an ARM reduced build must include. With
    # asymmetric 8-bit activations ORT's NHWC transformer also runs the pool on the quantized tensor
    # (com.microsoft NhwcMaxPool); either pool kernel must be listed.
    assert "com.microsoft:1:QLinearConv" in ops, " ".join(ops)
    assert any(o.endswith((":MaxPool", ":NhwcMaxPool")) for o in ops), " ".join(ops)
    assert "/tmp" not in (out / CONFIG_NAME).read_text()
    assert [a.name for a in android_export.artifacts if a.format == "ort"] == ["ort-int8-static"]  # no fp16 .ort

    with np.load(out / "validation/inputs.npz") as z:
        x = z["image"][:6]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s_ort = ort.InferenceSession(str(out / "model.int8.ort"), so, providers=["CPUExecutionProvider"])
    s_onnx = ort.InferenceSession(str(out / "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
    for i in range(len(x)):
        a = s_ort.run(None, {"image": x[i:i + 1]})[0]
        b = s_onnx.run(None, {"image": x[i:i + 1]})[0]
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_declared_for_mobile_targets_only():  # type: ignore[no-untyped-def]
    spec = get_stage("ort-format")
    assert spec.phase == "artifact" and spec.formats == ("onnx",)
    assert "ort-format" in load_target("android-arm64").passes and "ort-format" in load_target("ios-arm64").passes
    assert "ort-format" not in load_target("raspberry-pi-5").passes


def test_shipped_ort_is_what_a_fresh_conversion_gives(android_export, tmp_path):  # type: ignore[no-untyped-def]
    """Same .onnx, same .ort bytes: converting the shipped INT8 model again reproduces the hashed artifact."""
    out = android_export.output
    art = android_export.artifact("ort-int8-static")
    (again,), _config = convert_to_ort([out / "model.int8.onnx"], tmp_path, arm=True)
    assert sha256_file(again) == sha256_file(out / art.path) == art.sha256
