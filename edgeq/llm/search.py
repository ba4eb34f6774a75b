"""Per format, the smallest variant inside the perplexity budget: candidates are tried smallest first (4-bit, then
4-bit with the output projection / sensitive layers at 8 bits, then 8-bit) and judged on the calibration windows;
the first one inside the budget wins. The 8-bit rung is always measured so the manifest shows the safe choice."""

from __future__ import annotations

from edgeq.llm.config import Variant


def ladder(fmt: str) -> tuple[Variant, ...]:
    if fmt == "onnx":
        return (
            Variant("onnx", 4, 32, embedding_bits=4),
            Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head",)),
            Variant("onnx", 4, 32, embedding_bits=4, keep8=("lm_head", "mixed"), algo="k_quant"),
            Variant("onnx", 4, 16, embedding_bits=4, keep8=("lm_head", "mixed"), algo="k_quant"),
            Variant("onnx", 8, 32, embedding_bits=0),
        )
    return (
        Variant("pte", 4, 32, activations="dynamic-int8"),
        Variant("pte", 4, 32, activations="dynamic-int8", keep8=("lm_head",)),
        Variant("pte", 4, 32, activations="weight-only", keep8=("lm_head",)),
        Variant("pte", 8, 0, activations="dynamic-int8"),
    )


def float_variant(fmt: str) -> Variant:
    return Variant(fmt, 32, 0, embedding_bits=0)


def is_eight_bit(v: Variant) -> bool:
    return v.bits == 8
