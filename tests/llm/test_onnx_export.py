"""The mapping from a Variant to onnxruntime-genai builder options, and its refusals."""

from __future__ import annotations

import pytest

from edgeq.errors import UsageError
from edgeq.llm.config import Variant
from edgeq.llm.onnx_export import builder_options


def test_onnx_variant_options_are_checked() -> None:
    prec, opts = builder_options(Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head", "mixed"), algo="k_quant"))
    assert prec == "int4" and opts["op_types_to_quantize"] == "MatMul/Gather" and opts["accuracy_level"] == "4"
    assert opts["matmul_mixed_precision"] == "last_matmul:int8,mixed_layers:int8" and opts["algo_config"] == "k_quant"
    for bad in (Variant("onnx", 8, 32, embedding_bits=8), Variant("onnx", 4, 24, embedding_bits=4),
                Variant("onnx", 4, 32, activations="dynamic-int8", embedding_bits=4), Variant("onnx", 3, 32)):
        with pytest.raises(UsageError):
            builder_options(bad)
