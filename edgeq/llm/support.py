"""What each language-model format builds, as :class:`edgeq.recipe.RecipeSupport` declarations, and
:func:`check_llm_recipe`, which refuses the rest (a typed :class:`UsageError`: the ingredient, why, and the fix)
before a slow build instead of building something else than the recipe says.

- ``onnx`` (onnxruntime-genai's builder, ``MatMulNBits``): weight-only int4/int8 weights, group-wise (block 16 to
  256), symmetric or asymmetric; ``lm_head`` and llama.cpp's ``mixed`` layers at int8 (over a 4-bit body); the
  embedding table at int4 or kept float; ``gptq``, ``hqq`` or ``k_quant``; the kernel's ``accuracy_level``.
- ``pte`` (torchao + XNNPACK): weight-only int4 or 8da4w / 8da8w (dynamic per-token int8 activations), symmetric
  weights per group or per output channel; ``lm_head``, the first and last blocks (``ends``) and numbered decoder
  blocks (``block<i>``, chosen by measured sensitivity: edgeq.llm.sensitivity) at int8; the
  embedding table at int4, int8 or float; ``smoothquant`` then ``gptq``.

What the declarations cannot say (a block size the kernel lacks, GPTQ's grid per format, 8-bit weight-only on
XNNPACK) is refused by the builders themselves (:func:`edgeq.llm.onnx_export.builder_options`,
:func:`edgeq.llm.pte_export.quantized_model`), still with a :class:`UsageError` and before any weights are written.
"""

from __future__ import annotations

from edgeq.errors import UsageError
from edgeq.recipe import Activations, GroupOverride, Reason, Recipe, RecipeSupport, StepName, check_support

# the one activation setting of a dynamic LM recipe: XNNPACK's int8 per-token scales (8da4w / 8da8w)
PER_TOKEN_INT8 = Activations(dtype="int8", granularity="per-token")
# what runs after smoothquant: at most one rounding step
ROUNDING_STEPS: tuple[StepName, ...] = ("gptq", "hqq", "k_quant")

_TO_PTE = "use --format pte"
ONNX_LLM_SUPPORT = RecipeSupport(
    fmt="onnx", schemes=("weight-only",), override_kinds=(), weight_types=("int4", "int8"), group_wise=True,
    asymmetric_weights=True,
    groups=(GroupOverride("lm_head", "int8"), GroupOverride("mixed", "int8"), GroupOverride("embedding", "int4"),
            GroupOverride("embedding", "float")),
    steps=ROUNDING_STEPS, matmul_nbits=True,
    reasons=(Reason("scheme:dynamic", "the ONNX LM's linears are MatMulNBits, which stores weights only; its int8 "
                    "activation math is matmul_nbits.accuracy_level 4", "use scheme='weight-only'"),
             Reason("group:ends", "onnxruntime-genai's builder keeps only the output projection (last_matmul) and "
                    "llama.cpp's sensitive layers (mixed_layers) at 8 bits", f"use the mixed group, or {_TO_PTE}"),
             Reason("group:block=int8", "onnxruntime-genai's builder keeps only the output projection and llama.cpp's "
                    "sensitive layers at 8 bits, not chosen decoder blocks", f"use the mixed group, or {_TO_PTE}"),
             Reason("group:embedding=int8", "onnxruntime's GatherBlockQuantized is 4-bit only",
                    "keep the embedding table int4 or float"),
             Reason("step:smoothquant", "the ONNX LM stores weights only (MatMulNBits): it has no quantized "
                    "activations to smooth", f"drop the step, or {_TO_PTE} (8da8w)")))

PTE_LLM_SUPPORT = RecipeSupport(
    fmt="pte", schemes=("weight-only", "dynamic"), override_kinds=(), weight_types=("int4", "int8"), group_wise=True,
    groups=(GroupOverride("lm_head", "int8"), GroupOverride("ends", "int8"), GroupOverride("embedding", "int4"),
            GroupOverride("embedding", "int8"), GroupOverride("embedding", "float")),
    block_widths=("int8",), steps=("smoothquant", "gptq"),
    reasons=(Reason("weights:asymmetric", "XNNPACK's int4 and int8 linear weights are symmetric",
                    "use symmetric weights, or --format onnx"),
             Reason("group:mixed", "llama.cpp's sensitive-layer list is picked by onnxruntime-genai's builder; the "
                    ".pte keeps the first and last decoder blocks instead", "use the ends group, or --format onnx"),
             Reason("step:hqq", "the .pte's 4-bit weights always take torchao's HQQ scale search "
                    "(hqq_scale_only): the step would build the same bytes as none", "drop the step"),
             Reason("step:k_quant", "k-quant scales are onnxruntime-genai's builder's",
                    "use gptq, or --format onnx"),
             Reason("matmul_nbits", "MatMulNBits is an ONNX Runtime kernel; XNNPACK's dynamically quantized "
                    "linears always compute with int8 activations", "drop matmul_nbits, or --format onnx")))

LLM_SUPPORT = {"onnx": ONNX_LLM_SUPPORT, "pte": PTE_LLM_SUPPORT}


def llm_support(fmt: str) -> RecipeSupport:
    if fmt not in LLM_SUPPORT:
        raise UsageError(f"unknown format {fmt!r} for text generation", f"use one of {', '.join(LLM_SUPPORT)}")
    return LLM_SUPPORT[fmt]


def check_llm_recipe(fmt: str, recipe: Recipe) -> None:
    """Refuse a recipe FMT's language-model build cannot build as written: its declared support first, then what
    every LM build needs (a weight type, per-token int8 dynamic activations, smoothquant before one rounding step,
    the embedding table at a width the format stores)."""
    support = llm_support(fmt)
    check_support(recipe, support)
    w = recipe.weights
    if w.dtype is None:
        raise UsageError("a language model's recipe names its weight type", "set weights.dtype to int4 or int8")
    if recipe.scheme == "dynamic" and recipe.activations != PER_TOKEN_INT8:
        raise UsageError(f"a dynamic language-model recipe has int8 per-token activations, got {recipe.activations}",
                         "set activations to dtype='int8', granularity='per-token' (8da4w / 8da8w)")
    if w.reduce_range is not None or (w.group_size == 0 and w.per_channel is False):
        raise UsageError("language-model weights have one scale per group or per output channel, without "
                         "reduce_range", "drop reduce_range; use group_size > 0, or per_channel true")
    names = [s.name for s in recipe.steps]
    rounding = [n for n in names if n != "smoothquant"]
    if len(rounding) > 1 or ("smoothquant" in names and names[0] != "smoothquant"):
        raise UsageError(f"the LM build runs smoothquant, then one rounding step ({', '.join(ROUNDING_STEPS)}); "
                         f"got {', '.join(names)}", "keep at most one rounding step, after smoothquant")
    embedding = recipe.group("embedding") or GroupOverride("embedding", w.dtype)  # no row: the body's width
    if embedding not in support.groups:
        reason = support.reason(f"group:embedding={embedding.dtype}")
        raise UsageError(f"--format {fmt} cannot store the embedding table {embedding.dtype} (the body's width "
                         f"when the recipe has no embedding row): {reason.why}", reason.fix)
