"""What a format can build: each backend declares a :class:`RecipeSupport`, and :func:`check_support` refuses a
recipe with an ingredient outside it (a typed :class:`UsageError` naming the ingredient, why, and the fix) instead
of building something else than the recipe says."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.errors import UsageError
from edgeq.recipe.parts import (
    OVERRIDE_KINDS,
    GroupOverride,
    GroupType,
    OverrideKind,
    RecipeScheme,
    StepName,
    WeightType,
    block_index,
)
from edgeq.recipe.recipe import Recipe

# what an override asks of the format, in a refusal's words
_OVERRIDE_WHAT: dict[OverrideKind, str] = {"float": "keep nodes in float", "float16": "keep nodes in float16",
                                           "int16-activations": "keep nodes at 16 bits"}


@dataclass(frozen=True)
class Reason:
    """Why a format cannot build one ingredient, and what to do instead."""

    # "scheme:weight-only", "override:int16-activations", "weights:int4", "weights:group-wise", "group:ends",
    # "group:embedding=int8", "step:gptq", "matmul_nbits", ...
    ingredient: str
    why: str
    fix: str


@dataclass(frozen=True)
class RecipeSupport:
    """The recipes a format builds. An ingredient not listed is refused with its :class:`Reason` (or a generic one).

    ``no_ops``: ingredients accepted and recorded but without effect on the bytes, each with why (documented in
    the format's reference page). ``groups``: the layer-group rows the format builds, each group at the widths
    listed; ``block_widths``: the widths a numbered decoder block (``block<i>``) may take; ``steps``: the weight-preparation steps it runs; ``matmul_nbits``: whether it takes that ONNX option.
    ``compression``: whether it builds from a model the ``--compress`` steps prepared (torch-side, before capture).
    """

    fmt: str
    schemes: tuple[RecipeScheme, ...]
    override_kinds: tuple[OverrideKind, ...]
    weight_types: tuple[WeightType, ...]
    group_wise: bool = False
    asymmetric_weights: bool = False
    mixed_float_kinds: bool = True  # float and float16 layers in one model
    reasons: tuple[Reason, ...] = ()
    no_ops: tuple[str, ...] = ()
    groups: tuple[GroupOverride, ...] = ()
    block_widths: tuple[GroupType, ...] = ()
    steps: tuple[StepName, ...] = ()
    matmul_nbits: bool = False
    compression: bool = False

    def reason(self, ingredient: str) -> Reason:
        return next((r for r in self.reasons if r.ingredient == ingredient),
                    Reason(ingredient, f"the {self.fmt} backend does not build it",
                           "drop it from the recipe, or export another --format"))


def _names(nodes: tuple[str, ...]) -> str:
    return ", ".join(nodes[:5]) + (", ..." if len(nodes) > 5 else "")


def unsupported(recipe: Recipe, support: RecipeSupport) -> tuple[str, str] | None:
    """The first ingredient of ``recipe`` that ``support`` lacks: (its reason's key, what it asks, in words)."""
    if recipe.scheme not in support.schemes:
        return f"scheme:{recipe.scheme}", f"build a {recipe.scheme} recipe"
    for kind in OVERRIDE_KINDS:
        nodes = recipe.nodes(kind)
        if kind != "int16-activations":
            nodes = (*nodes, *recipe.op_types(kind))
        if nodes and kind not in support.override_kinds:
            return f"override:{kind}", f"{_OVERRIDE_WHAT[kind]} ({_names(nodes)})"
    w = recipe.weights
    if w.dtype is not None and w.dtype not in support.weight_types:
        return f"weights:{w.dtype}", f"build {w.dtype} weights"
    if w.group_size and not support.group_wise:
        return "weights:group-wise", f"build group-wise weights (group_size {w.group_size})"
    if not w.symmetric and not support.asymmetric_weights:
        return "weights:asymmetric", "build asymmetric weights"
    float_nodes = (*recipe.nodes("float"), *recipe.op_types("float"))
    if not support.mixed_float_kinds and float_nodes and recipe.nodes("float16") + recipe.op_types("float16"):
        return "overrides:mixed-float", f"keep some layers float32 ({_names(float_nodes)}) and others float16"
    return _unsupported_llm_part(recipe, support)


def _unsupported_llm_part(recipe: Recipe, support: RecipeSupport) -> tuple[str, str] | None:
    """The first layer group, step or kernel option of ``recipe`` that ``support`` lacks."""
    for g in recipe.groups:
        if block_index(g.group) is not None:
            if g.dtype not in support.block_widths:
                return f"group:block={g.dtype}", f"store a numbered decoder block's ({g.group}) weights {g.dtype}"
            continue
        if g not in support.groups:
            known = any(s.group == g.group for s in support.groups)
            key = f"group:{g.group}={g.dtype}" if known else f"group:{g.group}"
            width = "keep" if g.dtype == "float" else "store"
            return key, f"{width} the {g.group} layers' weights {g.dtype}" + (
                f" (it builds {', '.join(s.dtype for s in support.groups if s.group == g.group)})" if known else "")
    for s in recipe.steps:
        if s.name not in support.steps:
            return f"step:{s.name}", f"run the {s.name} step"
    if recipe.matmul_nbits is not None and not support.matmul_nbits:
        return "matmul_nbits", "take MatMulNBits options (an ONNX Runtime kernel)"
    return None


def _unsupported_compression(recipe: Recipe, support: RecipeSupport) -> tuple[str, str] | None:
    if recipe.compression and not support.compression:
        return (f"compression:{recipe.compression[0].name}",
                f"build from a model compressed with {', '.join(m.name for m in recipe.compression)}")
    return None


def check_support(recipe: Recipe, support: RecipeSupport) -> None:
    """Refuse ``recipe`` when ``support`` lacks one of its ingredients: cause (what, why) and fix."""
    missing = unsupported(recipe, support) or _unsupported_compression(recipe, support)
    if missing is None:
        return
    key, what = missing
    reason = support.reason(key)
    raise UsageError(f"--format {support.fmt} cannot {what}: {reason.why}", reason.fix)
