"""mobile-usability: NNAPI/CoreML partitions and blocking nodes, in the manifest and the HTML report."""

from __future__ import annotations

from edgeq.stages.mobile_usability import analyze


def test_nnapi_takes_the_fixed_int8_model(android_export):  # type: ignore[no-untyped-def]
    art = android_export.artifact("onnx-int8-static")
    res = art.details["mobile_usability"]
    nnapi = res["eps"]["NNAPI"]
    assert res["dynamic_inputs"] == []
    assert nnapi["partitions"] == 1 and nnapi["supported_nodes"] == nnapi["nodes"] > 0
    assert nnapi["suitability"] == "YES" and nnapi["blocking_nodes"] == []
    logged = [p for p in android_export.manifest["passes"] if p["name"] == "mobile-usability"]
    assert len(logged) == 1 and set(logged[0]["details"]["artifacts"]) == {"onnx-int8-static", "onnx-fp16"}
    html = android_export.report_html.read_text()
    assert "Mobile execution providers" in html and "NNAPI" in html


def test_dynamic_batch_blocks_nnapi(digits_fp32):  # type: ignore[no-untyped-def]
    src, _ = digits_fp32  # the plain export: dynamic batch
    nnapi = analyze(src, ("NNAPI",))["eps"]["NNAPI"]
    assert nnapi["supported_nodes"] < nnapi["nodes"]
    assert nnapi["nodes_unsupported_due_to_dynamic_shape"] > 0
    assert any(b["reason"].startswith("dynamic input") for b in nnapi["blocking_nodes"])


def test_coreml_blocks_qdq_nodes(android_export):  # type: ignore[no-untyped-def]
    """CoreML has no QuantizeLinear/DequantizeLinear: the INT8 QDQ model fragments; the fp16 one does not."""
    out = android_export.output
    int8 = analyze(out / "model.int8.onnx", ("CoreML",))["eps"]["CoreML-MLProgram"]
    fp16 = analyze(out / "model.fp16.onnx", ("CoreML",))["eps"]["CoreML-MLProgram"]
    assert "ai.onnx:DequantizeLinear" in int8["unsupported_ops"] and int8["partitions"] > 1
    assert {b["op"] for b in int8["blocking_nodes"]} >= {"ai.onnx:QuantizeLinear", "ai.onnx:DequantizeLinear"}
    assert fp16["partitions"] == 1 and fp16["suitability"] == "YES"
