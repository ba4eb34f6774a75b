"""The mapping from a Variant to onnxruntime-genai builder options, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.errors import UsageError
from edgeq.llm.config import Variant
from edgeq.llm.onnx_export import builder_options


def test_onnx_variant_options_are_checked() -> None:
    prec, opts = builder_options(Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head", "mixed"), algo="k_quant"))
    assert prec == "int4" and opts["op_types_to_quantize"] == "MatMul/Gather" and opts["accuracy_level"] == "4"
    assert opts["matmul_mixed_precision"] == "last_matmul:int8,mixed_layers:int8" and opts["algo_config"] == "k_quant"
    prec, opts = builder_options(Variant("onnx", 8, 32, embedding_bits=4))  # table quantized after the build
    assert prec == "int8" and opts["op_types_to_quantize"] == "MatMul"
    for bad in (Variant("onnx", 8, 32, embedding_bits=8), Variant("onnx", 4, 24, embedding_bits=4),
                Variant("onnx", 4, 32, activations="dynamic-int8", embedding_bits=4), Variant("onnx", 3, 32)):
        with pytest.raises(UsageError):
            builder_options(bad)


def test_eight_bit_build_with_a_four_bit_embedding_table(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """The builder leaves an int8 build's embedding float; quantize_embedding() makes it GatherBlockQuantized
    (4-bit): smaller, the same I/O, and the logits of the float-table build to within the table's 4-bit error."""
    import numpy as np
    import onnx

    from edgeq.llm.onnx_export import build_onnx, folder_bytes
    from edgeq.llm.runners import OnnxLM

    ids = np.arange(3, 35, dtype=np.int64)
    floats = build_onnx(tiny_lm["model"], tmp_path / "embf", Variant("onnx", 8, 32, embedding_bits=0), tmp_path / "c")
    four = build_onnx(tiny_lm["model"], tmp_path / "emb4", Variant("onnx", 8, 32, embedding_bits=4), tmp_path / "c")
    ops = {n.op_type for n in onnx.load(str(four / "model.onnx"), load_external_data=False).graph.node}
    float_ops = {n.op_type for n in onnx.load(str(floats / "model.onnx"), load_external_data=False).graph.node}
    assert "GatherBlockQuantized" in ops and "GatherBlockQuantized" not in float_ops and "Gather" in float_ops
    assert "MatMulNBits" in ops and folder_bytes(four) < folder_bytes(floats)
    a, b = OnnxLM(floats).forward(ids, 0), OnnxLM(four).forward(ids, 0)
    assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9 and np.abs(a - b).max() < 0.1 * np.abs(a).max()
    r = OnnxLM(four)  # the KV cache still reproduces the full pass
    steps = np.concatenate([r.forward(ids[i:i + 1], i) for i in range(len(ids))])
    assert (steps.argmax(-1) == b.argmax(-1)).all() and np.abs(steps - b).max() < 1e-2  # int8 activation math


def test_asymmetric_and_hqq_variant_options() -> None:
    """Issue #24's moves: asymmetric RTN goes to the builder as is_symmetric=false; HQQ builds the float graph
    (the builder has no HQQ) and refuses what it cannot express."""
    v = Variant("onnx", 4, 64, symmetric=False, embedding_bits=4)
    opts = builder_options(v)[1]  # RTN: the builder's default quantizer breaks an asymmetric tied table
    assert v.name == "onnx-w4g64-asym-emb4" and opts["is_symmetric"] == "false" and opts["algo_config"] == "rtn"
    h = Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head",), algo="hqq")
    assert h.name == "onnx-w4g32-hqq-lm_head8-emb4" and builder_options(h)[0] == "fp32"
    with pytest.raises(UsageError):
        builder_options(Variant("onnx", 4, 32, keep8=("mixed",), algo="hqq"))


def test_hqq_build_runs_with_an_eight_bit_head(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """An HQQ build: the body's MatMuls 4-bit (float zero points), lm_head 8-bit, the table 4-bit; it runs and
    its logits follow the float build's."""
    import numpy as np
    import onnx

    from edgeq.llm.onnx_export import build_onnx, folder_bytes
    from edgeq.llm.onnx_weights import LM_HEAD
    from edgeq.llm.runners import OnnxLM

    ids = np.arange(3, 35, dtype=np.int64)
    floats = build_onnx(tiny_lm["model"], tmp_path / "f", Variant("onnx", 32, 0, embedding_bits=0), tmp_path / "c")
    v = Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head",), algo="hqq")
    hqq = build_onnx(tiny_lm["model"], tmp_path / "h", v, tmp_path / "c")
    nodes = onnx.load(str(hqq / "model.onnx"), load_external_data=False).graph.node
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in nodes if n.op_type == "MatMulNBits"}
    assert bits.pop(f"{LM_HEAD}_Q8") == 8 and set(bits.values()) == {4}
    assert "GatherBlockQuantized" in {n.op_type for n in nodes} and "MatMul" not in {n.op_type for n in nodes}
    assert folder_bytes(hqq) < 0.5 * folder_bytes(floats)
    a, b = OnnxLM(floats).forward(ids, 0), OnnxLM(hqq).forward(ids, 0)
    assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.5 and np.abs(a - b).max() < 0.5 * np.abs(a).max()


def test_asymmetric_four_bit_build_of_a_tied_model_loads(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """With the builder's default quantizer an asymmetric tied table does not load (uint8 into a float Reshape);
    with RTN it does: the build loads, runs, and its embedding is GatherBlockQuantized."""
    import numpy as np
    import onnx

    from edgeq.llm.onnx_export import build_onnx
    from edgeq.llm.runners import OnnxLM

    out = build_onnx(tiny_lm["model"], tmp_path / "a", Variant("onnx", 4, 32, symmetric=False, embedding_bits=4),
                     tmp_path / "c")
    assert "GatherBlockQuantized" in {n.op_type for n in onnx.load(str(out / "model.onnx"),
                                                                   load_external_data=False).graph.node}
    assert np.isfinite(OnnxLM(out).forward(np.arange(3, 19, dtype=np.int64), 0)).all()
