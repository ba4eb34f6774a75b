"""The ingredients of a :class:`edgeq.recipe.Recipe`: activations, weights and per-layer overrides, each a frozen
dataclass whose fields are ``Literal`` types, validated on construction (typed errors, never asserts)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from edgeq.config import CalibrationMethod, IntType
from edgeq.errors import UsageError

CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("minmax", "percentile", "entropy", "distribution")
INT_TYPES: tuple[IntType, ...] = ("int8", "uint8", "int16", "uint16")

# static: calibrated INT8 activations; dynamic: activation scales computed per run (per tensor or per token),
# n-bit weights; hybrid: static convolutions + dynamic linears; weight-only: n-bit weights, float activations.
RecipeScheme = Literal["static", "dynamic", "hybrid", "weight-only"]
SCHEMES: tuple[RecipeScheme, ...] = ("static", "dynamic", "hybrid", "weight-only")
Granularity = Literal["per-tensor", "per-token"]
GRANULARITIES: tuple[Granularity, ...] = ("per-tensor", "per-token")
WeightType = Literal["int4", "uint4", "int8", "uint8", "int16", "uint16"]
WEIGHT_TYPES: tuple[WeightType, ...] = ("int4", "uint4", "int8", "uint8", "int16", "uint16")
# float: the layer stays float32; float16: it stays float with float16 weights (a .pte computes it in float16
# too); int16-activations: its inputs and outputs get 16-bit Q/DQ (ONNX mixed precision).
OverrideKind = Literal["float", "float16", "int16-activations"]
OVERRIDE_KINDS: tuple[OverrideKind, ...] = ("float", "float16", "int16-activations")
FloatKind = Literal["float", "float16"]
FLOAT_KINDS: tuple[FloatKind, ...] = ("float", "float16")

__all__ = ["CALIBRATION_METHODS", "INT_TYPES", "Activations", "CalibrationMethod", "GroupOverride", "IntType",
           "LayerOverride", "MatMulNBits", "OpTypeOverride", "Step", "Weights", "block_group", "block_index"]


def _check(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise UsageError(f"unknown {what} {value!r}", f"choose one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Activations:
    """How activations are quantized. ``None`` = the target profile's choice (filled when the recipe is resolved).

    ``dtype`` and ``calibration`` apply to calibrated (static) activations, ``granularity`` to dynamic ones: one
    scale per tensor (ONNX Runtime's ``DynamicQuantizeMatMul``) or per token (a linear input's row).
    """

    dtype: IntType | None = None
    granularity: Granularity = "per-tensor"
    calibration: CalibrationMethod | None = None
    max_calibration_samples: int = 256

    def __post_init__(self) -> None:
        if self.dtype is not None:
            _check(self.dtype, INT_TYPES, "activation dtype")
        _check(self.granularity, GRANULARITIES, "activation granularity")
        if self.calibration is not None:
            _check(self.calibration, CALIBRATION_METHODS, "calibration method")
        if isinstance(self.max_calibration_samples, bool) or not isinstance(self.max_calibration_samples, int) \
                or self.max_calibration_samples < 1:
            raise UsageError(f"max_calibration_samples must be an integer >= 1, got {self.max_calibration_samples!r}")


@dataclass(frozen=True)
class Weights:
    """How weights are quantized. ``group_size`` 0: one scale per output channel (``per_channel``) or per tensor;
    > 0: one scale per group of that many inputs (4-bit LLM weights, torchao's ``group_size``)."""

    dtype: WeightType | None = None
    per_channel: bool | None = None
    group_size: int = 0
    symmetric: bool = True
    reduce_range: bool | None = None  # 7-bit weights: x86 ONNX Runtime's saturation workaround

    def __post_init__(self) -> None:
        if self.dtype is not None:
            _check(self.dtype, WEIGHT_TYPES, "weight dtype")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 0:
            raise UsageError(f"weight group_size must be an integer >= 0, got {self.group_size!r}",
                             "0 = per channel / per tensor, e.g. 32 for group-wise 4-bit weights")

    @property
    def bits(self) -> int | None:
        return None if self.dtype is None else int(self.dtype.removeprefix("u").removeprefix("int"))


@dataclass(frozen=True)
class LayerOverride:
    """One layer (an ONNX node name; for a .pte an FX node name or a torch module path) quantized otherwise than
    the rest (torchao's ``ModuleFqnToConfig`` entry)."""

    node: str
    kind: OverrideKind

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise UsageError(f"a layer override needs a node name, got {self.node!r}")
        _check(self.kind, OVERRIDE_KINDS, "layer override kind")


@dataclass(frozen=True)
class OpTypeOverride:
    """Every layer of one operator type kept out of INT8 (ONNX: ``Softmax``; .pte: an aten op name, ``linear``)."""

    op_type: str
    kind: FloatKind = "float"

    def __post_init__(self) -> None:
        if not isinstance(self.op_type, str) or not self.op_type:
            raise UsageError(f"an op-type override needs an operator type, got {self.op_type!r}")
        _check(self.kind, FLOAT_KINDS, "op-type override kind")


# --- language-model ingredients (edgeq.llm): named layer groups, weight-preparation steps, kernel options -----------
# lm_head: the output projection; embedding: the token-embedding table; mixed: llama.cpp's sensitive layers (the
# attention value and FFN down projections of some blocks, as onnxruntime-genai's builder picks them); ends: the
# first and last decoder blocks' linears; block<i> (block0, block17, ...): the linears of decoder block i, a group
# the search picks by measured sensitivity (edgeq.llm.sensitivity). A model without such a layer gets nothing from its
# row.
LayerGroup = Literal["lm_head", "embedding", "mixed", "ends"]
LAYER_GROUPS: tuple[LayerGroup, ...] = ("lm_head", "embedding", "mixed", "ends")
_BLOCK = re.compile(r"block(0|[1-9][0-9]*)")
GroupType = Literal["float", "int4", "uint4", "int8", "uint8", "int16", "uint16"]
GROUP_TYPES: tuple[GroupType, ...] = ("float", *WEIGHT_TYPES)
# gptq: error-compensating rounding on calibration text; hqq: half-quadratic scale search (onnxruntime's HQQ);
# k_quant: llama.cpp's k-quant scales (onnxruntime-genai's builder); smoothquant: activation outliers folded into
# the preceding norms / up-projections before the weights are quantized
StepName = Literal["smoothquant", "gptq", "hqq", "k_quant"]
STEP_NAMES: tuple[StepName, ...] = ("smoothquant", "gptq", "hqq", "k_quant")
ACCURACY_LEVELS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class GroupOverride:
    """A named group of layers whose weights get another width than the body's (``float``: kept float). A group
    without a row follows the recipe's ``weights``."""

    group: str  # one of LAYER_GROUPS, or block<i>
    dtype: GroupType

    def __post_init__(self) -> None:
        if block_index(self.group) is None:
            _check(self.group, (*LAYER_GROUPS, "block<i>"), "layer group")
        _check(self.dtype, GROUP_TYPES, f"{self.group} weight type")


def block_group(index: int) -> str:
    """The layer-group name of decoder block INDEX (0-based): ``block<index>``."""
    return f"block{index}"


def block_index(group: str) -> int | None:
    """The decoder block a ``block<i>`` group names (None: a named group such as ``lm_head``)."""
    m = _BLOCK.fullmatch(group)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Step:
    """One weight-preparation step, applied in the recipe's order before the weights are stored (the issue's
    compression steps; torchao's and ExecuTorch's llama recipes run them as source transforms)."""

    name: StepName

    def __post_init__(self) -> None:
        _check(self.name, STEP_NAMES, "weight-preparation step")


@dataclass(frozen=True)
class MatMulNBits:
    """ONNX Runtime's ``MatMulNBits`` kernel option. ``accuracy_level``: the minimum precision of its activation
    math — 4 = int8 activations (the fast ARM sdot/i8mm and x86 VNNI path), 1 = float32 (weight-only math: as
    accurate, decodes ~10x slower), 0 = the kernel's default, 2 = float16, 3 = bfloat16."""

    accuracy_level: int = 4

    def __post_init__(self) -> None:
        level = self.accuracy_level
        if isinstance(level, bool) or not isinstance(level, int) or level not in ACCURACY_LEVELS:
            raise UsageError(f"MatMulNBits accuracy_level must be 0-4, got {self.accuracy_level!r}",
                             "4 = int8 activation math, 1 = float32")
