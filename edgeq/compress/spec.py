"""Compression methods as frozen configs, and the ``--compress`` spelling that builds them.

``prune:0.3,qat,lowrank:0.9,cluster:16,sparse:0.5`` (``qat:4``: 4-bit weights) → a tuple of configs applied in the order given. The config
type selects the transform (torchao's ``quantize_(model, config)`` style); each method module registers its
``apply`` for its config type in :mod:`edgeq.compress.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TypedDict, Unpack

from edgeq.errors import EdgeqError, UsageError
from edgeq.jsontypes import JSONObject

COMPRESS_VERSION = 1


@dataclass(frozen=True)
class PruneConfig:
    """Structured pruning: remove ``ratio`` of the prunable output channels / rows (conv channels, FFN rows).

    Per-layer ratios come from a sensitivity pass; pruning happens in ``steps`` increments, each fine-tuned.
    """

    ratio: float = 0.3
    steps: int = 0  # 0: one step per 0.1 of ratio, at most 3
    name: str = "prune"

    def __post_init__(self) -> None:
        if not (0 < self.ratio < 1):
            raise UsageError(f"prune ratio must be in (0, 1), got {self.ratio}", "e.g. prune:0.3 removes 30 % of channels")
        if self.steps < 0:
            raise UsageError(f"prune steps must be >= 0, got {self.steps}")

    @property
    def level(self) -> float:
        return self.ratio


@dataclass(frozen=True)
class SparseConfig:
    """Unstructured magnitude pruning: zero the ``ratio`` smallest weights of each Linear / Conv layer."""

    ratio: float = 0.5
    name: str = "sparse"

    def __post_init__(self) -> None:
        if not (0 < self.ratio < 1):
            raise UsageError(f"sparse ratio must be in (0, 1), got {self.ratio}", "e.g. sparse:0.5 zeroes half the weights")

    @property
    def level(self) -> float:
        return self.ratio


@dataclass(frozen=True)
class LowRankConfig:
    """SVD factorisation of Linear and 1×1 Conv layers, keeping the rank that holds ``energy`` of Σσ²."""

    energy: float = 0.9
    name: str = "lowrank"

    def __post_init__(self) -> None:
        if not (0 < self.energy < 1):
            raise UsageError(f"lowrank energy must be in (0, 1), got {self.energy}",
                             "e.g. lowrank:0.9 keeps the singular values that hold 90 % of the energy")

    @property
    def level(self) -> float:
        return self.energy


@dataclass(frozen=True)
class ClusterConfig:
    """Weight clustering (palettisation): each layer's weights snap to ``clusters`` k-means centroids."""

    clusters: int = 16
    name: str = "cluster"

    def __post_init__(self) -> None:
        if not (2 <= self.clusters <= 256):
            raise UsageError(f"cluster count must be in [2, 256], got {self.clusters}",
                             "e.g. cluster:16 (4-bit palette) or cluster:256 (8-bit palette)")

    @property
    def level(self) -> float:
        return float(self.clusters)


QAT_BITS = (4, 8)


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware training with torchao PT2E (``prepare_qat_pt2e``) and the XNNPACK quantizer.

    ``bits``: weight bits (8, or 4: symmetric int4 weight grid [-8, 7]); activations are INT8 either way.
    ``per_channel``: ``None`` follows ``--per-channel/--per-tensor``, else the target's ExecuTorch setting.
    The trained fake-quant ranges are what both formats ship (``convert_pt2e`` for ``.pte``, QDQ for ONNX).
    """

    bits: int = 8
    per_channel: bool | None = None
    name: str = "qat"

    def __post_init__(self) -> None:
        if self.bits not in QAT_BITS:
            raise UsageError(f"qat weight bits must be 4 or 8, got {self.bits}",
                             "qat (INT8 weights) or qat:4 (4-bit weights, INT8 activations)")

    @property
    def level(self) -> float:
        return float(self.bits)


MethodConfig = PruneConfig | SparseConfig | LowRankConfig | ClusterConfig | QatConfig

# name -> (config type, name of its one numeric argument or None)
_METHODS: dict[str, tuple[type, str | None]] = {
    "prune": (PruneConfig, "ratio"),
    "sparse": (SparseConfig, "ratio"),
    "lowrank": (LowRankConfig, "energy"),
    "cluster": (ClusterConfig, "clusters"),
    "qat": (QatConfig, "bits"),
}
_INT_ARGS = ("clusters", "bits")


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


def parse_item(item: str) -> MethodConfig:
    """One ``name[:value]`` item; errors name the bad item."""
    text = item.strip()
    name, sep, value = text.partition(":")
    name = name.strip().lower()
    if name not in _METHODS:
        raise UsageError(f"--compress: unknown method {text!r}", f"choose from {', '.join(_METHODS)}, "
                         "e.g. --compress prune:0.3,qat")
    cls, arg = _METHODS[name]
    if arg is None:
        if sep:
            raise UsageError(f"--compress: {name!r} takes no value, got {text!r}", f"write just {name}")
        cfg: MethodConfig = cls()
        return cfg
    if not sep:
        return cls()  # type: ignore[no-any-return]
    try:
        num: float | int = int(value) if arg in _INT_ARGS else float(value)
    except ValueError as e:
        kind = "an integer" if arg in _INT_ARGS else "a number"
        raise UsageError(f"--compress: {text!r}: {value!r} is not {kind}", f"e.g. {name}:{cls().level:g}") from e
    if isinstance(num, float) and not math.isfinite(num):
        raise UsageError(f"--compress: {text!r}: value must be finite")
    try:
        return cls(**{arg: num})  # type: ignore[no-any-return]
    except UsageError as e:
        raise UsageError(f"--compress: {text!r}: {e.cause}", e.hint) from e


def parse_spec(spec: str) -> tuple[MethodConfig, ...]:
    """``prune:0.3,qat`` → (PruneConfig(0.3), QatConfig()). Empty items and repeats are errors."""
    items = [s for s in spec.split(",")]
    if not spec.strip():
        return ()
    methods = []
    for s in items:
        if not s.strip():
            raise UsageError(f"--compress {spec!r}: empty item", "separate methods with single commas")
        methods.append(parse_item(s))
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"--compress {spec!r}: {dup!r} listed twice", "give each method once, with its final level")
    if "qat" in names and names[-1] != "qat":
        raise UsageError(f"--compress {spec!r}: qat must come last",
                         "QAT fits the weights to the INT8 grid; a later method would move them off it")
    return tuple(methods)


def method_dict(m: MethodConfig) -> JSONObject:
    """``{"method": "prune", "ratio": 0.3, "steps": 0}``: one method as the manifest records it."""
    return {"method": m.name, **{k: v for k, v in asdict(m).items() if k != "name"}}


def _field_ok(default: object, value: object) -> bool:
    """A JSON value fits a field of this default (float: any number; int: an integer; None: a boolean or null)."""
    if isinstance(value, bool):
        return default is None
    return value is None if default is None else isinstance(value, int | float if isinstance(default, float) else int)


def method_from_dict(d: Mapping[str, object], where: str, error: type[EdgeqError]) -> MethodConfig:
    """A method as :func:`method_dict` wrote it; an unknown method or key, a wrong type or an out-of-range level
    raises ``error`` naming the key."""
    name = d.get("method")
    if not isinstance(name, str) or name not in _METHODS:
        raise error(f"{where}: unknown compression method {name!r}", f"method is one of {', '.join(_METHODS)}")
    cls = _METHODS[name][0]
    defaults = {f.name: f.default for f in fields(cls) if f.name != "name"}
    unknown = sorted(set(d) - {"method", *defaults})
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r} for {name}", f"{name} keys are {', '.join(defaults)}")
    bad = next((k for k in defaults if k in d and not _field_ok(defaults[k], d[k])), None)
    if bad is not None:
        raise error(f"{where}: {bad}={d[bad]!r} has the wrong type", f"e.g. {bad}={defaults[bad]!r}")
    try:
        cfg: MethodConfig = cls(**{k: d[k] for k in defaults if k in d})
    except UsageError as e:
        raise error(f"{where}: {e.cause}", e.hint) from e
    return cfg


def format_spec(methods: tuple[MethodConfig, ...]) -> str:
    out = []
    for m in methods:
        _, arg = _METHODS[m.name]
        default = isinstance(m, QatConfig) and m.bits == QatConfig().bits  # plain ``qat`` stays ``qat``
        out.append(m.name if arg is None or default else f"{m.name}:{getattr(m, arg):g}")
    return ",".join(out)


@dataclass(frozen=True)
class TrainOptions:
    """The fine-tune every method runs after it changes the model (distillation from the float model).

    ``data``: an .npz with the model's inputs (and optional ``labels``); ``None`` uses the calibration data.
    ``fn``: ``pkg.mod:fn`` called as ``fn(model, step_budget)`` instead of the built-in loop.
    """

    data: str | None = None
    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    temperature: float = 2.0
    fn: str | None = None
    seed: int = 0
    distill: str = "auto"  # kl (class scores) | mse (embeddings) | auto: kl for 2-D outputs


    def __post_init__(self) -> None:
        if self.steps < 0:
            raise UsageError(f"--train-steps must be >= 0, got {self.steps}", "e.g. --train-steps 300; 0 skips fine-tuning")
        if self.batch_size < 1:
            raise UsageError(f"--train-batch must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--train-lr must be a positive number, got {self.lr}", "e.g. 1e-3")
        if not (self.temperature > 0):
            raise UsageError(f"distillation temperature must be > 0, got {self.temperature}")
        if self.distill not in ("auto", "kl", "mse"):
            raise UsageError(f"--distill-loss must be auto, kl or mse, got {self.distill!r}",
                             "kl for classifiers, mse for embedding models")
        if self.fn is not None and ":" not in self.fn:
            raise UsageError(f"--train-fn {self.fn!r} is not pkg.module:function", "e.g. --train-fn mypkg.train:step")


class TrainArgs(TypedDict, total=False):
    """:class:`TrainOptions`' fields as keyword arguments (``CompressOptions.from_spec(spec, steps=...)``)."""

    data: str | None
    steps: int
    batch_size: int
    lr: float
    temperature: float
    fn: str | None
    seed: int
    distill: str


@dataclass(frozen=True)
class CompressOptions:
    """What ``--compress`` asks for, plus how to fine-tune. Empty ``methods`` = no compression."""

    methods: tuple[MethodConfig, ...] = ()
    train: TrainOptions = field(default_factory=TrainOptions)
    version: int = COMPRESS_VERSION

    @classmethod
    def from_spec(cls, spec: str | None, **train: Unpack[TrainArgs]) -> CompressOptions:
        return cls(parse_spec(spec or ""), TrainOptions(**train))

    @property
    def enabled(self) -> bool:
        return bool(self.methods)

    def to_dict(self) -> JSONObject:
        return {"version": self.version, "spec": format_spec(self.methods),
                "methods": [method_dict(m) for m in self.methods],
                "train": asdict(self.train)}
