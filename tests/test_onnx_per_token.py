"""Per-token dynamic INT8 for ONNX (edgeq.onnx.per_token): one activation scale per row, with ONNX Runtime's graph
optimizations on; embeddings quantized as the plain dynamic model's; exclusions kept float; the search move and an
end-to-end export on the text encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.config import QuantOptions, SearchOptions
from edgeq.errors import UsageError
from edgeq.onnx.dynamic import quantize_onnx_dynamic
from edgeq.onnx.per_token import per_token_linears, quantize_weight

RNG = np.random.default_rng(0)


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto],
           output: str = "y") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [onnx.ValueInfoProto(name=output)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the fusions a user gets
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return np.asarray(ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0])


def _linear_with_bias(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """``y = x @ w + b``: the Cast -> Mul -> Add shape that ORT's MatMulIntegerToFloat fusion looks for."""
    return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="linear"),
                   helper.make_node("Add", ["h", "b"], ["y"], name="bias")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 64])],
                  [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])


def test_each_token_gets_its_own_scale_under_ort_fusions(tmp_path: Path) -> None:
    w = RNG.standard_normal((64, 32)).astype(np.float32) * 0.1
    b = RNG.standard_normal(32).astype(np.float32)
    x = RNG.standard_normal((2, 8, 64)).astype(np.float32)
    x[:, 0] *= 40.0  # an outlier token ([CLS]-like) in every sequence
    model = _linear_with_bias(w, b)
    onnx.save(model, str(tmp_path / "float.onnx"))
    assert per_token_linears(model) == ["linear"]
    got = _run(model, {"x": x})
    # what per-token INT8 computes, in numpy: each row's symmetric scale, per-channel INT8 weights
    s = np.maximum(np.abs(x).max(-1, keepdims=True) / 127, 1e-8)
    q, ws = quantize_weight(w, per_channel=True)
    want = (np.rint(x / s).astype(np.int32) @ q.astype(np.int32)).astype(np.float32) * s * ws + b
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the ordinary tokens keep their resolution, where ORT's one scale per tensor loses it to the outlier token
    quantize_onnx_dynamic(tmp_path / "float.onnx", tmp_path / "ort.onnx", QuantOptions(mode="dynamic", per_channel=True))
    ref = x @ w + b
    err_token = np.abs(got - ref)[:, 1:].mean()
    err_tensor = np.abs(_run(tmp_path / "ort.onnx", {"x": x}) - ref)[:, 1:].mean()
    assert err_token * 5 < err_tensor, (err_token, err_tensor)


def test_embeddings_quantized_and_exclusions_kept_float(tmp_path: Path) -> None:
    emb = RNG.standard_normal((100, 32)).astype(np.float32)
    w1 = RNG.standard_normal((32, 32)).astype(np.float32)
    w2 = RNG.standard_normal((32, 16)).astype(np.float32)
    model = _model([helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
                    helper.make_node("MatMul", ["e", "w1"], ["h"], name="l1"),
                    helper.make_node("MatMul", ["h", "w2"], ["y"], name="l2")],
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 6])],
                   [numpy_helper.from_array(a, n) for a, n in ((emb, "emb"), (w1, "w1"), (w2, "w2"))])
    onnx.save(model, str(tmp_path / "float.onnx"))
    info = quantize_onnx_dynamic(tmp_path / "float.onnx", tmp_path / "q.onnx",
                                 QuantOptions(mode="dynamic", per_token=True, nodes_to_exclude=("l2",)))
    assert info["per_token_linears"] == ["l1"] and "per token" in str(info["activation_type"])
    q = onnx.load(str(tmp_path / "q.onnx"))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("MatMulInteger") == 1 and ops.count("MatMul") == 1  # l1 integer, l2 kept float
    floats = {t.name for t in q.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    assert floats == {"w2"}  # the embedding table and w1 are INT8 now
    ids = np.array([[1, 5, 7, 99, 0, 3]], np.int64)
    y, ref = _run(q, {"ids": ids}), emb[ids] @ w1 @ w2
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def test_per_token_is_a_dynamic_scheme() -> None:
    with pytest.raises(UsageError, match="per-token"):
        QuantOptions(per_token=True)


@pytest.mark.slow
def test_export_with_per_token_on_the_text_encoder(tmp_path: Path) -> None:
    import edgeq
    from edgeq.zoo.text import write_text_data

    calib, ev = write_text_data(tmp_path / "data", n_calib=32, n_eval=64)
    res = edgeq.export("edgeq.zoo.text:text_encoder", calib=str(calib), eval=str(ev), output=tmp_path / "out",
                       quant=QuantOptions(mode="dynamic", per_token=True), search=SearchOptions(mode="off"),
                       explain=False)
    art = next(a for a in res.artifacts if a.precision != "fp32")
    assert art.quantization is not None and "per token" in str(art.quantization["activation_type"])
    v = art.validations[0]
    assert v.metrics["cosine_mean"] > 0.99 and v.budget_check["passed"] is not None
    assert res.manifest["config"]["recorded"]["quant"]["per_token"] is True  # a rebuild gets the same scheme
