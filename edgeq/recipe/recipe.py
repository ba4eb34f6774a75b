"""``Recipe``: what goes into one quantized candidate, as one frozen, versioned value.

Modelled on torchao's ``AOBaseConfig`` (a config type with a version and to/from dict), its per-module
``ModuleFqnToConfig`` (here: :class:`LayerOverride` rows) and ExecuTorch's ``ExportRecipe``. The manifest records
each INT8 artifact's recipe (``quantization.recipe``); building that recipe again gives the same bytes.

``QuantOptions`` (the export's options) converts both ways without loss: :meth:`Recipe.from_quant_options` and
:meth:`Recipe.to_quant_options`. A recipe ``QuantOptions`` cannot say (weight-only or 4-bit weights, group-wise or
asymmetric weights, float and float16 layers in one model) is refused by ``to_quant_options`` with a typed error.

A language model's candidate (edgeq.llm) is a recipe too: ``weight-only`` n-bit weights or ``dynamic`` per-token
int8 activations with n-bit weights (8da4w), group-wise and asymmetric weights, :class:`GroupOverride` rows for
named layer groups at another width (``lm_head`` / ``mixed`` / ``ends`` at int8, the ``embedding`` table at int4 or
kept ``float``), the weight-preparation :class:`Step` s in order (``smoothquant``, ``gptq``, ``hqq``, ``k_quant``)
and the ONNX kernel's :class:`MatMulNBits` option. ``edgeq.llm.config.Variant.to_recipe`` / ``from_recipe``
convert without loss; each LLM format declares what it builds (``edgeq.llm.support``).

``compression``: the ``--compress`` steps (:mod:`edgeq.compress.spec`'s frozen configs: prune, sparse, lowrank,
cluster, qat) applied in order to the PyTorch model before it was captured and quantized. They are a torch-side
preparation of the build's inputs, not a quantizer setting: ``to_quant_options`` ignores them and a rebuild from
the recipe takes the compressed model's graph; the recipe records them so it says everything that went into the
candidate. Serialized as ``{"version": COMPRESS_VERSION, "methods": [...]}`` (the manifest ``compression``
section's ``methods`` rows).

These keys are optional and written only when set: a version-1 recipe without them serializes as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from edgeq.compress.spec import MethodConfig, QatConfig
from edgeq.config import IntType, QuantOptions
from edgeq.errors import EdgeqError, ManifestError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.recipe.codec import (
    activations_from,
    check_keys,
    compression_dict,
    compression_from,
    groups_from,
    literal,
    matmul_nbits_from,
    op_types_from,
    overrides_from,
    part_dict,
    steps_from,
    weights_from,
)
from edgeq.recipe.parts import (
    SCHEMES,
    Activations,
    FloatKind,
    GroupOverride,
    LayerOverride,
    MatMulNBits,
    OpTypeOverride,
    OverrideKind,
    RecipeScheme,
    Step,
    Weights,
)

RECIPE_VERSION = 1
RECIPE_KEYS = ("version", "scheme", "activations", "weights", "overrides", "excluded_op_types", "groups", "steps",
               "matmul_nbits", "compression")


def _once(names: list[str], what: str, fix: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{what} {twice[0]!r} appears more than once in the recipe", fix)


def _canonical(overrides: tuple[LayerOverride, ...]) -> tuple[LayerOverride, ...]:
    """Kept-float layers first, then 16-bit ones, each group in the given order (the order does not change what is
    built; one order makes equal recipes compare and serialize equal)."""
    return tuple(sorted(overrides, key=lambda o: o.kind == "int16-activations"))


@dataclass(frozen=True)
class Recipe:
    """What goes into a candidate: the scheme, its activations and weights, and the layers quantized otherwise.

    ``groups``, ``steps`` and ``matmul_nbits`` say what a language model's candidate needs besides (edgeq.llm):
    named layer groups at another width, the weight-preparation steps in order, and the ONNX kernel's option.
    ``compression``: the ``--compress`` steps applied to the PyTorch model, in order, before it was captured.
    """

    scheme: RecipeScheme = "static"
    activations: Activations = field(default_factory=Activations)
    weights: Weights = field(default_factory=Weights)
    overrides: tuple[LayerOverride, ...] = ()
    excluded_op_types: tuple[OpTypeOverride, ...] = ()
    version: int = RECIPE_VERSION
    groups: tuple[GroupOverride, ...] = ()  # in the given order: each group at most once
    steps: tuple[Step, ...] = ()  # applied in this order, each at most once
    matmul_nbits: MatMulNBits | None = None  # None: the kernel's option is not part of this recipe
    compression: tuple[MethodConfig, ...] = ()  # applied to the model in this order before capture, each at most once

    def __post_init__(self) -> None:
        if self.version != RECIPE_VERSION:
            raise UsageError(f"recipe version {self.version} is not supported (this edgeq builds {RECIPE_VERSION})")
        if self.scheme not in SCHEMES:
            raise UsageError(f"unknown recipe scheme {self.scheme!r}", f"choose one of {', '.join(SCHEMES)}")
        if self.activations.granularity == "per-token" and self.scheme != "dynamic":
            raise UsageError("per-token activation scales are a dynamic scheme", "use scheme='dynamic'")
        if self.scheme == "weight-only" and self.activations != Activations():
            raise UsageError("a weight-only recipe keeps activations float: it takes no activation settings",
                             "drop activations, or use scheme='dynamic' for n-bit weights with dynamic INT8 "
                             "activations (8da4w)")
        object.__setattr__(self, "overrides", _canonical(tuple(self.overrides)))
        object.__setattr__(self, "excluded_op_types", tuple(self.excluded_op_types))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "steps", tuple(self.steps))
        _once([g.group for g in self.groups], "layer group", "give each group one width")
        _once([s.name for s in self.steps], "weight-preparation step", "run each step once")
        object.__setattr__(self, "compression", tuple(self.compression))
        _once([m.name for m in self.compression], "compression method", "give each method once, with its level")
        if any(isinstance(m, QatConfig) for m in self.compression[:-1]):
            raise UsageError("qat must be the last compression step",
                             "QAT fits the weights to the INT8 grid; a later method would move them off it")

    # --- the layers quantized otherwise --------------------------------------------------------------------------
    def nodes(self, *kinds: OverrideKind) -> tuple[str, ...]:
        """The overridden layers of ``kinds``, in the recipe's order."""
        return tuple(o.node for o in self.overrides if o.kind in kinds)

    def op_types(self, *kinds: FloatKind) -> tuple[str, ...]:
        return tuple(o.op_type for o in self.excluded_op_types if o.kind in kinds)

    def kept_float32(self) -> Recipe:
        """This recipe with every float16 layer kept float32: what the INT8 quantizer builds before a format stores
        the float16 layers' weights in half precision."""
        return replace(self, overrides=tuple(replace(o, kind="float") if o.kind == "float16" else o
                                             for o in self.overrides),
                       excluded_op_types=tuple(replace(o, kind="float") for o in self.excluded_op_types))

    def with_float16(self, nodes: tuple[str, ...]) -> Recipe:
        """This recipe with the kept-float layers ``nodes`` storing float16 weights (the ONNX search's kept
        linears, :mod:`edgeq.onnx.mixed`)."""
        wanted = set(nodes)
        return replace(self, overrides=tuple(replace(o, kind="float16") if o.node in wanted and o.kind == "float"
                                             else o for o in self.overrides))

    def group(self, name: str) -> GroupOverride | None:
        """The row of layer group NAME (None: the group follows ``weights``)."""
        return next((g for g in self.groups if g.group == name), None)

    # --- JSON --------------------------------------------------------------------------------------------------
    def to_dict(self) -> JSONObject:
        """The recipe as JSON. ``groups``, ``steps``, ``matmul_nbits`` and ``compression`` are written only when set,
        so a recipe without them has the same dict (and bytes) as before they existed."""
        d: JSONObject = {"version": self.version, "scheme": self.scheme, "activations": part_dict(self.activations),
                         "weights": part_dict(self.weights), "overrides": [part_dict(o) for o in self.overrides],
                         "excluded_op_types": [part_dict(o) for o in self.excluded_op_types]}
        if self.groups:
            d["groups"] = [part_dict(g) for g in self.groups]
        if self.steps:
            d["steps"] = [part_dict(s) for s in self.steps]
        if self.matmul_nbits is not None:
            d["matmul_nbits"] = part_dict(self.matmul_nbits)
        if self.compression:
            d["compression"] = compression_dict(self.compression)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, object], where: str = "recipe", error: type[EdgeqError] = ManifestError) -> Recipe:
        """A recipe as :meth:`to_dict` wrote it. A newer or unknown version, an unknown key or a malformed value
        raises ``error`` naming the key and the fix; a missing part takes its default."""
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise error(f"{where}: version must be an integer, got {version!r}",
                        f"a recipe starts with \"version\": {RECIPE_VERSION}")
        if version > RECIPE_VERSION:
            raise error(f"{where}: recipe version {version} is newer than this edgeq reads ({RECIPE_VERSION})",
                        "upgrade edgeq (pip install -U edgeq) to build from it")
        if version != RECIPE_VERSION:
            raise error(f"{where}: recipe version {version} is not supported (this edgeq reads {RECIPE_VERSION})",
                        f"set version to {RECIPE_VERSION}")
        check_keys(d, RECIPE_KEYS, where, error)
        try:
            return Recipe(scheme=literal(d, "scheme", SCHEMES, "static", where, error),
                          activations=activations_from(d.get("activations", {}), f"{where}.activations", error),
                          weights=weights_from(d.get("weights", {}), f"{where}.weights", error),
                          overrides=overrides_from(d.get("overrides", []), f"{where}.overrides", error),
                          excluded_op_types=op_types_from(d.get("excluded_op_types", []),
                                                          f"{where}.excluded_op_types", error),
                          groups=groups_from(d.get("groups", []), f"{where}.groups", error),
                          steps=steps_from(d.get("steps", []), f"{where}.steps", error),
                          matmul_nbits=matmul_nbits_from(d.get("matmul_nbits"), f"{where}.matmul_nbits", error),
                          compression=compression_from(d.get("compression"), f"{where}.compression", error))
        except UsageError as e:  # a combination the parts refuse (e.g. per-token activations on a static recipe)
            if error is UsageError:
                raise
            raise error(f"{where}: {e.cause}", e.hint) from e

    # --- QuantOptions ------------------------------------------------------------------------------------------
    @staticmethod
    def from_quant_options(q: QuantOptions) -> Recipe:
        """The recipe ``q`` says, field for field (``to_quant_options`` gives ``q`` back)."""
        kept: FloatKind = "float16" if q.fp16_float_linears else "float"
        scheme: RecipeScheme = "hybrid" if q.dynamic_linears else q.mode
        return Recipe(
            scheme=scheme,
            activations=Activations(q.activation_type, "per-token" if q.per_token else "per-tensor", q.calibration,
                                    q.max_calibration_samples),
            weights=Weights(q.weight_type, q.per_channel, reduce_range=q.reduce_range),
            overrides=(*(LayerOverride(n, kept) for n in q.nodes_to_exclude),
                       *(LayerOverride(n, "int16-activations") for n in q.int16_activation_nodes)),
            excluded_op_types=tuple(OpTypeOverride(t, kept) for t in q.op_types_to_exclude))

    def to_quant_options(self) -> QuantOptions:
        """The ``QuantOptions`` that build this recipe; a recipe they cannot say raises :class:`UsageError`."""
        self._check_quant_options()
        w, a = self.weights, self.activations
        return QuantOptions(
            mode="static" if self.scheme in ("static", "hybrid") else "dynamic",
            calibration=a.calibration, per_channel=w.per_channel, activation_type=a.dtype,
            weight_type=cast(IntType | None, w.dtype),  # int4/uint4 refused by _check_quant_options
            reduce_range=w.reduce_range, nodes_to_exclude=self.nodes("float", "float16"),
            op_types_to_exclude=self.op_types("float", "float16"),
            max_calibration_samples=a.max_calibration_samples,
            int16_activation_nodes=self.nodes("int16-activations"), dynamic_linears=self.scheme == "hybrid",
            per_token=a.granularity == "per-token",
            fp16_float_linears=bool(self.nodes("float16") or self.op_types("float16")))

    def _check_quant_options(self) -> None:
        w = self.weights
        hint = "build it with the LLM flow (edgeq export --task text-generation), which takes n-bit weights"
        if self.scheme == "weight-only":
            raise UsageError("a weight-only recipe has no QuantOptions (they always quantize activations)", hint)
        if self.groups or self.steps or self.matmul_nbits is not None:
            raise UsageError("a recipe with layer groups, weight-preparation steps or MatMulNBits options has no "
                             "QuantOptions (they describe a language model's weights)", hint)
        if w.dtype in ("int4", "uint4") or w.group_size or not w.symmetric:
            raise UsageError(f"{w.dtype or 'the'} weights (group_size {w.group_size}, "
                             f"{'symmetric' if w.symmetric else 'asymmetric'}) have no QuantOptions: they take 8- or "
                             "16-bit symmetric weights, one scale per channel or per tensor", hint)
        if self.nodes("float") + self.op_types("float") and self.nodes("float16") + self.op_types("float16"):
            raise UsageError("QuantOptions keep every float layer in one precision: this recipe has both float "
                             f"({', '.join((*self.nodes('float'), *self.op_types('float'))[:3])}) and float16 "
                             f"({', '.join((*self.nodes('float16'), *self.op_types('float16'))[:3])}) layers",
                             "make every kept layer float or every one float16, or build the recipe directly "
                             "(get_backend('onnx').build, edgeq.backends)")
