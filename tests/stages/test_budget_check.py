"""budget-check: bytes vs storage, weights + peak activations vs RAM; over budget fails the verdict."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.manifest import Artifact
from edgeq.pipeline.stage import get_stage
from edgeq.stages.budget_check import MB, onnx_memory_estimate
from edgeq.targets import load_target
from edgeq.validate.orchestrate import verdict


def _mlp(path, width: int = 1024):  # type: ignore[no-untyped-def]
    """x[N,width] -> MatMul(W1) -> Relu -> MatMul(W2): 8 MB of float weights, known activation sizes."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])], [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_memory_estimate_is_a_liveness_peak(tmp_path):  # type: ignore[no-untyped-def]
    _mlp(tmp_path / "m.onnx")
    est = onnx_memory_estimate(tmp_path / "m.onnx")
    assert est["weights_bytes"] == 2 * 1024 * 1024 * 4
    # batch 1: x (4 KB) + h (4 KB) live when h is produced; then x is freed -> peak 2 tensors of 4 KB
    assert est["peak_activation_bytes"] == 2 * 4096 and est["tensors_without_shape"] == 0


def test_over_budget_fails_with_numbers(tmp_path):  # type: ignore[no-untyped-def]
    _mlp(tmp_path / "model.onnx")
    art = Artifact(name="onnx-fp32", path="model.onnx", format="onnx", precision="fp32", role="baseline")
    art = art.refresh(tmp_path)
    digest = art.sha256
    tight = dataclasses.replace(load_target("raspberry-pi-zero-2w"), storage_mb=4, ram_mb=5)
    from edgeq.config import QuantOptions
    from edgeq.pipeline.state import BuildState

    ctx = BuildState(target=tight, fmt="onnx", workdir=tmp_path, quant=QuantOptions(), artifacts=(art,))
    res = get_stage("budget-check").run(ctx)
    assert len(res.verdict_failures) == 2
    storage, ram = res.verdict_failures
    assert "8.00 MB, over the target's storage budget of 4 MB" in storage
    assert "needs ~8.01 MB RAM" in ram and "5 MB" in ram
    row = res.details["artifacts"][0]
    assert row["bytes"] > 4 * MB and row["ram_estimate_bytes"] == 8 * MB + 8192 and not row["within_budget"]
    assert res.state is not None and res.state.changed_fields(ctx) == {"artifacts"}  # the finding, recorded:
    noted = res.state.artifacts[0]
    assert noted.details["budget"]["within_budget"] is False and art.details == {}  # on a new Artifact
    assert noted.refresh(tmp_path).sha256 == digest  # an analysis: the artifact's file is unchanged
    v = verdict([], [{"name": "budget-check", **res.to_dict()}])
    assert not v["passed"] and any("storage budget of 4 MB" in f for f in v["failures"])


def test_within_budget_in_export(android_export):  # type: ignore[no-untyped-def]
    logged = [p for p in android_export.manifest["passes"] if p["name"] == "budget-check"]
    assert len(logged) == 1 and logged[0]["failures"] == []
    rows = {r["artifact"]: r for r in logged[0]["details"]["artifacts"]}
    assert set(rows) >= {"onnx-fp32", "onnx-int8-static", "onnx-fp16", "ort-int8-static"}
    # weight DequantizeLinear outputs fold into the weights: INT8 activations are not larger than float ones
    assert rows["onnx-int8-static"]["peak_activation_bytes"] <= rows["onnx-fp32"]["peak_activation_bytes"] * 1.5
    assert rows["onnx-int8-static"]["weights_bytes"] < rows["onnx-fp32"]["weights_bytes"] / 2
    assert android_export.passed
