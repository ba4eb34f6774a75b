"""Frozen configs for the LLM flow: the run (LlmConfig) and one quantization variant (Variant).

``Variant`` is the ladder's compact spelling of a :class:`edgeq.recipe.Recipe`; :meth:`Variant.to_recipe` and
:meth:`Variant.from_recipe` convert without loss, and the manifest records the recipe (``quantization.recipe``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.llm.support import PER_TOKEN_INT8, check_llm_recipe
from edgeq.recipe import (
    Activations,
    GroupOverride,
    GroupType,
    MatMulNBits,
    Recipe,
    Step,
    Weights,
    WeightType,
    block_index,
)

FORMATS = ("onnx", "pte")
# the .pte's XNNPACK delegation (edgeq.llm.pte_export): auto = every op XNNPACK takes in the custom-SDPA program,
# only the quantized linears in the static-cache one
PTE_DELEGATIONS = ("auto", "linears", "all")
# the .pte program (edgeq.llm.pte_export): auto = custom-sdpa unless the attention needs what the custom op lacks
PTE_PROGRAMS = ("auto", "custom-sdpa", "static-cache")
ACTIVATIONS = ("weight-only", "dynamic-int8")
ALGOS = ("default", "gptq", "hqq", "k_quant")

# Variant field values -> recipe parts (keyed by the Variant's plain strings and ints)
_WEIGHTS: dict[int, WeightType] = {4: "int4", 8: "int8"}
_EMBEDDING: dict[int, GroupType] = {0: "float", 4: "int4", 8: "int8"}
_KEEP8 = ("lm_head", "mixed", "ends")  # and block<i> (edgeq.recipe.block_group)
_STEPS = {"gptq": Step("gptq"), "hqq": Step("hqq"), "k_quant": Step("k_quant")}


@dataclass(frozen=True)
class Variant:
    """One weight-quantization recipe. ``bits`` is the body's weight width; ``keep8`` names layer groups kept at
    8 bits (``lm_head``: the output projection; ``mixed``: llama.cpp's sensitive layers, ONNX only; ``ends``: the
    first and last decoder blocks, .pte only; ``block<i>``: decoder block i, .pte only). ``keep8_cap`` > 0 marks a
    rung whose 8-bit groups the search measures (edgeq.llm.sensitivity.resolve): the most sensitive output
    projection / decoder blocks on the calibration windows, added to ``keep8`` while the predicted artifact stays
    within ``keep8_cap`` x the float bytes; the resolved variant (``keep8_cap`` 0) is what is built and recorded.
    ``accuracy_level`` is MatMulNBits' activation math (ONNX only):
    4 = int8 activations (the fast ARM/x86 path), 1 = float32 activations (weight-only int8/int4 math)."""

    format: str
    bits: int  # 4 or 8 (32: the float export)
    group: int = 32  # block/group size along the input axis; 0 = per output channel
    symmetric: bool = True
    activations: str = "weight-only"  # weight-only | dynamic-int8 (ExecuTorch 8da4w/8da8w)
    keep8: tuple[str, ...] = ()
    embedding_bits: int = 8  # 0 keeps the embedding table float
    # ONNX: default (RTN) | k_quant | hqq (onnxruntime's HQQ after a float build) | gptq (edgeq.llm.gptq, then RTN)
    algo: str = "default"
    accuracy_level: int = 4  # ONNX MatMulNBits: 4 = int8 activation math, 1 = float32
    smooth: bool = False  # .pte: SmoothQuant folded into norms / up-projections before quantizing (edgeq.llm.smooth)
    keep8_cap: float = 0.0  # > 0: keep8 is measured at search time under this size cap (x float bytes)

    @property
    def name(self) -> str:
        if self.bits == 32:
            return f"{self.format}-fp32"
        act = "8da" if self.activations == "dynamic-int8" else "w"
        grp = f"g{self.group}" if self.group else "pc"
        blocks = [str(i) for k in self.keep8 if (i := block_index(k)) is not None]
        keep = "".join(f"-{k}8" for k in self.keep8 if block_index(k) is None)
        keep += f"-b{'.'.join(blocks)}_8" if blocks else ""
        keep += f"-sens{self.keep8_cap:g}x" if self.keep8_cap else ""
        sym = "" if self.symmetric else "-asym"
        algo = "" if self.algo == "default" else f"-{self.algo}"
        emb = f"-emb{self.embedding_bits}" if self.embedding_bits else "-embf"
        acc = "" if self.accuracy_level == 4 else f"-acc{self.accuracy_level}"
        sq = "-sq" if self.smooth else ""
        return f"{self.format}-{act}{self.bits}{grp}{sym}{algo}{sq}{keep}{acc}{emb}"

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["name"] = self.name
        d["keep8"] = list(self.keep8)
        return d

    # --- the recipe ----------------------------------------------------------------------------------------------
    def to_recipe(self) -> Recipe | None:
        """This variant as a recipe (None: the float build, which quantizes nothing — like a tensor export's
        float artifact). ``keep8`` groups become int8 :class:`GroupOverride` rows in order, ``embedding_bits`` an
        ``embedding`` row when it differs from ``bits`` (0: ``float``), ``smooth`` then ``algo`` the steps, and
        an ONNX variant's ``accuracy_level`` the :class:`MatMulNBits` option."""
        if self.bits == 32:
            return None
        _check_fields(self)
        if self.keep8_cap:
            raise UsageError(f"{self.name}: its 8-bit groups are measured at search time; no recipe before that",
                             "resolve it first (edgeq.llm.sensitivity.resolve), or list keep8 explicitly")
        dynamic = self.activations == "dynamic-int8"
        groups = [GroupOverride(k, "int8") for k in self.keep8]
        if self.embedding_bits != self.bits:
            groups.append(GroupOverride("embedding", _EMBEDDING[self.embedding_bits]))
        steps = (Step("smoothquant"),) if self.smooth else ()
        # a .pte variant records accuracy_level only when set otherwise than the default, which .pte refuses
        kernel = self.format == "onnx" or self.accuracy_level != 4
        return Recipe(scheme="dynamic" if dynamic else "weight-only",
                      activations=PER_TOKEN_INT8 if dynamic else Activations(),
                      weights=Weights(_WEIGHTS[self.bits], per_channel=True if self.group == 0 else None,
                                      group_size=self.group, symmetric=self.symmetric),
                      groups=tuple(groups), steps=(*steps, *([_STEPS[self.algo]] if self.algo != "default" else [])),
                      matmul_nbits=MatMulNBits(self.accuracy_level) if kernel else None)

    @staticmethod
    def from_recipe(fmt: str, recipe: Recipe | None) -> Variant:
        """The variant that builds RECIPE as FMT (None: the float build); a recipe FMT's LM build cannot build is
        refused (:func:`edgeq.llm.support.check_llm_recipe`). ``Variant.from_recipe(v.format, v.to_recipe()) == v``."""
        if recipe is None:
            return Variant(fmt, 32, 0, embedding_bits=0)
        check_llm_recipe(fmt, recipe)
        w = recipe.weights
        bits = next(b for b, t in _WEIGHTS.items() if t == w.dtype)  # the support admits int4 and int8 only
        emb = recipe.group("embedding")
        names = [s.name for s in recipe.steps]
        algo = next((n for n in names if n != "smoothquant"), "default")
        return Variant(fmt, bits, w.group_size, symmetric=w.symmetric,
                       activations="dynamic-int8" if recipe.scheme == "dynamic" else "weight-only",
                       # every non-embedding row is int8 (the formats' support declares no other width)
                       keep8=tuple(g.group for g in recipe.groups if g.group != "embedding"),
                       embedding_bits=bits if emb is None else next(b for b, t in _EMBEDDING.items() if t == emb.dtype),
                       algo=algo, accuracy_level=4 if recipe.matmul_nbits is None else recipe.matmul_nbits.accuracy_level,
                       smooth="smoothquant" in names)

    def check(self) -> None:
        """Refuse a variant its format cannot build as written (its recipe against the format's declared support;
        edgeq.llm.support), before a slow export. A measured rung (``keep8_cap``) is checked without its groups, which
        are numbered blocks a 4-bit .pte body keeps at 8 bits."""
        if self.keep8_cap:
            if self.format != "pte" or self.bits != 4 or not 0 < self.keep8_cap <= 1:
                raise UsageError(f"{self.name}: measured 8-bit groups need a 4-bit .pte variant and a size cap in "
                                 f"(0, 1] x float bytes", "set format='pte', bits=4, or keep8_cap=0")
            replace(self, keep8_cap=0.0).check()
            return
        recipe = self.to_recipe()
        if recipe is not None:
            check_llm_recipe(self.format, recipe)


def _check_fields(v: Variant) -> None:
    """The Variant values a recipe has a word for (typed errors naming the field)."""
    for what, value, allowed in (("bits", v.bits, (4, 8, 32)), ("activations", v.activations, ACTIVATIONS),
                                 ("embedding_bits", v.embedding_bits, tuple(_EMBEDDING)), ("algo", v.algo, ALGOS),
                                 *(("keep8", k, _KEEP8) for k in v.keep8 if block_index(k) is None)):
        if value not in allowed:
            raise UsageError(f"{v.format} variant: {what}={value!r} is not one of {', '.join(map(str, allowed))}",
                             f"set {what} to one of them")


@dataclass(frozen=True)
class LlmConfig:
    """One ``edgeq export --task text-generation`` run."""

    model: str
    output: Path
    calib_text: Path
    eval_text: Path | None = None  # None: the tail of --calib-text, disjoint from the calibration windows
    formats: tuple[str, ...] = FORMATS
    seq_len: int = 128
    max_context: int = 512  # the static KV cache length of the .pte; the ONNX model is dynamic
    calib_windows: int = 16  # the search's sample: its 95 % bound needs more than a handful (edgeq.llm.metrics)
    eval_windows: int = 16
    max_ppl_increase: float = 10.0  # percent over float perplexity
    greedy_prompts: int = 4
    greedy_tokens: int = 32
    variants: tuple[Variant, ...] = field(default_factory=tuple)  # empty: the default search ladder per format
    # ARM targets whose CPU is emulated (qemu) to measure the shipped artifacts' decode tokens/s: emulation,
    # not device speed
    emulate: tuple[str, ...] = ()
    # .pte XNNPACK delegation: "linears" = only the dynamically quantized linears (ExecuTorch's llama recipe
    # default), "all" = every op XNNPACK takes (optimum-executorch's xnnpack recipe), "auto" = all in the
    # custom-SDPA program (SmolLM2-135M 8-bit: decode 3.1x faster, ~25 % more CPU to lower) and linears in the
    # static-cache one (whose graph the greedy partitioner cuts into ~11 delegates per layer); float variants always
    # delegate all.
    pte_delegation: str = "auto"
    # The target profile: its checks (storage, RAM with the KV cache, Android's 16 KB .pte layout) apply, the .pte is
    # lowered with its layout, and an ARM target's CPU is emulated for decode tokens/s once the emulator is set up.
    target: str = "x86-64"
    # .pte program: custom-sdpa = ExecuTorch's fast decode path (its custom KV-cache and SDPA ops; the ExecuTorch
    # LLM runner links them, the wheel's bare C++ runtime does not), static-cache = transformers' static cache
    # (portable ops only, ~6x slower decode on SmolLM2-135M; what the emulated C++ runner can load)
    pte_program: str = "auto"
    force: bool = False
    version: int = 1

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["output"] = str(self.output)
        d["calib_text"] = str(self.calib_text)
        d["eval_text"] = None if self.eval_text is None else str(self.eval_text)
        d["variants"] = [v.to_dict() for v in self.variants]
        return d
