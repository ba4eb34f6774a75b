"""Frozen, versioned configuration dataclasses. Validation raises typed errors, never asserts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from edgeq.compress.spec import CompressOptions
from edgeq.errors import EdgeqError, ManifestError, UsageError
from edgeq.imagefolder import Preprocess
from edgeq.jsontypes import JSONObject, get_float_or_none

CONFIG_VERSION = 1

CalibrationMethod = Literal["minmax", "percentile", "entropy", "distribution"]
QuantMode = Literal["static", "dynamic"]
OutlierMode = Literal["auto", "on", "off"]
OUTLIER_MODES: tuple[str, ...] = ("auto", "on", "off")
RoundingMode = Literal["auto", "adaround", "gptq", "nearest"]
ROUNDING_MODES: tuple[str, ...] = ("auto", "adaround", "gptq", "nearest")
IntType = Literal["int8", "uint8", "int16", "uint16"]

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy", "distribution")
FORMATS: tuple[str, ...] = ("onnx", "pte")
INT_TYPES: tuple[str, ...] = ("int8", "uint8", "int16", "uint16")


@dataclass(frozen=True)
class Budget:
    """What 'still accurate enough to ship' means. ``None`` = not checked.

    ``max_accuracy_drop`` is in percentage points of task accuracy (needs labels) or, without
    labels, of top-1 agreement with the float model.
    """

    max_accuracy_drop: float | None = None
    min_cosine: float | None = None
    min_sqnr: float | None = None
    min_top1_agreement: float | None = None
    # Embeddings: share of evaluation samples whose nearest neighbour (cosine, among the evaluation set) is the
    # same for the candidate's outputs as for the float model's — what retrieval / dedup users feel.
    min_nn_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.max_accuracy_drop is not None and not (0 <= self.max_accuracy_drop <= 100):
            raise UsageError(
                f"--max-accuracy-drop must be between 0 and 100 points, got {self.max_accuracy_drop}",
                "it is a drop in percentage points, e.g. 0.5",
            )
        if self.min_cosine is not None and not (-1 <= self.min_cosine <= 1):
            raise UsageError(f"--min-cosine must be in [-1, 1], got {self.min_cosine}", "e.g. 0.99")
        if self.min_sqnr is not None and not math.isfinite(self.min_sqnr):
            raise UsageError(f"--min-sqnr must be a finite number of dB, got {self.min_sqnr}", "e.g. 20")
        if self.min_top1_agreement is not None and not (0 <= self.min_top1_agreement <= 1):
            raise UsageError(
                f"--min-top1-agreement must be in [0, 1], got {self.min_top1_agreement}", "e.g. 0.99"
            )
        if self.min_nn_agreement is not None and not (0 <= self.min_nn_agreement <= 1):
            raise UsageError(
                f"--min-nn-agreement must be in [0, 1], got {self.min_nn_agreement}", "e.g. 0.95"
            )

    @staticmethod
    def from_dict(d: Mapping[str, object], where: str = "edgeq.json",
                  error: type[EdgeqError] = ManifestError) -> Budget:
        """A budget as :meth:`to_dict` writes it (a manifest's, a config file's); an unknown key or a limit that
        is not a number raises ``error``."""
        names = [f.name for f in fields(Budget)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise error(f"{where}: budget is malformed (unknown key(s) {', '.join(unknown)})",
                        f"budget keys: {', '.join(names)}")
        return Budget(**{k: get_float_or_none(d, k, error) for k in names})

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def merged_over(self, base: Budget) -> Budget:
        """Values set here win; unset ones come from ``base`` (usually the target's defaults).

        An embedding budget (``min_nn_agreement`` set here) does not inherit ``base``'s accuracy drop: without
        labels that limit is checked as top-1 agreement, the argmax of a class-score vector, which for an embedding
        is an arbitrary coordinate.
        """
        merged = {f.name: (getattr(self, f.name) if getattr(self, f.name) is not None else getattr(base, f.name))
                  for f in fields(self)}
        if self.min_nn_agreement is not None and self.max_accuracy_drop is None:
            merged["max_accuracy_drop"] = None
        return Budget(**merged)

    def to_dict(self) -> JSONObject:
        return asdict(self)


@dataclass(frozen=True)
class QuantOptions:
    """How to quantize. ``None`` fields are filled from the target profile."""

    mode: QuantMode = "static"
    calibration: CalibrationMethod | None = None
    per_channel: bool | None = None
    activation_type: IntType | None = None
    weight_type: IntType | None = None
    reduce_range: bool | None = None
    nodes_to_exclude: tuple[str, ...] = ()
    op_types_to_exclude: tuple[str, ...] = ()
    max_calibration_samples: int = 256
    # Nodes kept at 16-bit activations (ONNX QDQ "mixed precision"), by node name.
    int16_activation_nodes: tuple[str, ...] = ()
    # Hybrid: static INT8 everywhere except the linear layers, which get dynamic per-token INT8 activations (and
    # so write float outputs) — a search move for graphs with both convolutions and linears (.pte).
    dynamic_linears: bool = False
    # Dynamic INT8 with one activation scale per token (row of a linear layer's input) instead of one per tensor
    # (ONNX: edgeq.onnx.per_token; a .pte's dynamic activations are always per token).
    per_token: bool = False
    # Linear layers kept float by ``nodes_to_exclude`` / ``op_types_to_exclude`` store float16 weights (.pte: and
    # compute in float16, XNNPACK's fp16 GEMM, edgeq.executorch.fp16_linears; ONNX: float16 weights behind a Cast,
    # edgeq.onnx.mixed, as the ONNX search's kept linears). False when nothing is kept float.
    fp16_float_linears: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("static", "dynamic"):
            raise UsageError(f"quantization mode must be static or dynamic, got {self.mode!r}")
        if self.dynamic_linears and self.mode != "static":
            raise UsageError("dynamic_linears (static convolutions, dynamic linears) needs mode='static'",
                             "mode='dynamic' already quantizes every linear dynamically")
        if self.per_token and self.mode != "dynamic":
            raise UsageError("per-token activation scales are a dynamic INT8 scheme", "use mode='dynamic' (--dynamic)")
        if self.calibration is not None and self.calibration not in CALIBRATION_METHODS:
            raise UsageError(
                f"unknown calibration method {self.calibration!r}",
                f"choose one of {', '.join(CALIBRATION_METHODS)}",
            )
        for name in ("activation_type", "weight_type"):
            value = getattr(self, name)
            if value is not None and value not in INT_TYPES:
                raise UsageError(f"unknown {name} {value!r}", f"choose one of {', '.join(INT_TYPES)}")
        if self.max_calibration_samples < 1:
            raise UsageError("max_calibration_samples must be >= 1")
        if self.fp16_float_linears and not (self.nodes_to_exclude or self.op_types_to_exclude):
            # nothing is kept float, so nothing is stored in float16: one spelling of the same build (a recipe,
            # edgeq.recipe, says float16 per kept layer and converts back to exactly these options)
            object.__setattr__(self, "fp16_float_linears", False)

    def resolved(self, defaults: QuantOptions) -> QuantOptions:
        """Fill unset (None) fields from ``defaults``."""
        updates = {f.name: getattr(defaults, f.name) for f in fields(self)
                   if getattr(self, f.name) is None}
        return replace(self, **updates)

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        d["op_types_to_exclude"] = list(self.op_types_to_exclude)
        d["int16_activation_nodes"] = list(self.int16_activation_nodes)
        return d


@dataclass(frozen=True)
class SearchOptions:
    """Budget-driven quantization search (ONNX). See :mod:`edgeq.search.search`.

    ``mode``: ``"auto"`` searches when the first static INT8 model misses the budget in force (flags, else the
    target's defaults), ``"always"`` searches whenever a budget exists, ``"off"`` never searches.
    ``max_size_ratio``: optional cap on the INT8 model's bytes as a share of the float model's.
    """

    mode: Literal["auto", "always", "off", "grid"] = "auto"
    max_trials: int = 16
    max_seconds: float = 3600.0  # a safety cap only: the budget is max_trials (deterministic on any machine)
    max_size_ratio: float | None = None
    calibrations: tuple[CalibrationMethod, ...] = ("minmax", "percentile", "entropy")
    sensitivity_samples: int = 16

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "always", "off", "grid"):
            raise UsageError(f"search mode must be auto, always, off or grid, got {self.mode!r}")
        if self.max_trials < 1:
            raise UsageError(f"--search-trials must be >= 1, got {self.max_trials}", "e.g. --search-trials 16")
        if not (self.max_seconds > 0 and math.isfinite(self.max_seconds)):
            raise UsageError(f"--search-time must be a positive number of seconds, got {self.max_seconds}",
                             "e.g. --search-time 300")
        if self.max_size_ratio is not None and not (0 < self.max_size_ratio <= 1):
            raise UsageError(f"--max-size-ratio must be in (0, 1], got {self.max_size_ratio}", "e.g. 0.3")
        for m in self.calibrations:
            if m not in CALIBRATION_METHODS:
                raise UsageError(f"unknown calibration method {m!r}", f"choose from {', '.join(CALIBRATION_METHODS)}")
        if self.sensitivity_samples < 1:
            raise UsageError("sensitivity_samples must be >= 1")

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["calibrations"] = list(self.calibrations)
        return d


# torch.onnx's dynamo exporter writes opset 18 natively; lower versions are not honoured. The upper bound is what
# onnxruntime 1.2x executes.
MIN_OPSET, MAX_OPSET = 18, 23


DEFAULT_FLEET_FILE = "edgeq-fleet.toml"


@dataclass(frozen=True)
class FleetOptions:
    """How SSH boards are validated together (edgeq.validate.fleet): ``--fleet``, ``--jobs``, ``--board-timeout``,
    ``--min-boards``. ``min_boards`` None means every selected board must answer."""

    file: str | None = None  # the fleet file; None = ./edgeq-fleet.toml when a fleet: selector is used
    jobs: int = 4  # boards validated at the same time
    board_timeout: float = 1800.0  # seconds for one board's whole share of the run (probe, copies, runs)
    min_boards: int | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        if not (self.board_timeout > 0 and math.isfinite(self.board_timeout)):
            raise UsageError(f"--board-timeout must be a positive number of seconds, got {self.board_timeout}")
        if self.min_boards is not None and self.min_boards < 1:
            raise UsageError(f"--min-boards must be >= 1, got {self.min_boards}",
                             "it is how many boards must answer for the run to count")

    def to_dict(self) -> JSONObject:
        return asdict(self)


@dataclass(frozen=True)
class PipelineConfig:
    """One edgeq run. Build it from CLI flags, from ``edgeq.toml`` (:func:`edgeq.load_config`) or in Python."""

    model: str
    calib: str
    output: Path
    eval: str | None = None
    target: str = "x86-64"
    formats: tuple[str, ...] = ("onnx",)
    quant: QuantOptions = field(default_factory=QuantOptions)
    budget: Budget = field(default_factory=Budget)
    force: bool = False
    eval_fraction: float = 0.2
    max_eval_samples: int = 512
    seed: int = 0
    validate_on: tuple[str, ...] = ("auto",)  # "auto": host, + emulator for ARM targets once set up
    fleet: FleetOptions = field(default_factory=FleetOptions)  # for ssh:// boards and fleet: selectors
    opset: int = 18
    search: SearchOptions = field(default_factory=SearchOptions)
    preprocess: Preprocess | None = None  # for image-folder DATA (edgeq.imagefolder)
    compress: CompressOptions = field(default_factory=CompressOptions)  # --compress / [compress]: before capture
    trust_pickle: bool = False  # allow pickle-backed .pt2 members (runs code from the file)
    # Outlier-aware PTQ in torch before capture (edgeq.prepare): "auto" = for PyTorch models given an explicit
    # budget when the search may run, "on" = always for PyTorch models, "off" = never.
    outliers: OutlierMode = "auto"
    # The conv-net weight rounding of that preparation (edgeq.prepare.conv_prepare): "gptq" (default: act-order
    # GPTQ), "adaround" (learned), "nearest", "auto" (both GPTQ and AdaRound built, the lower simulated INT8
    # error kept).
    rounding: RoundingMode = "gptq"
    version: int = CONFIG_VERSION
    # --runner-timeout: seconds before one artifact run is killed (None: the target's runner_timeout_s)
    runner_timeout_s: float | None = None
    # --no-explain: skip edgeq.explain's per-layer error and per-operator profiles (diagnostics only: the artifacts,
    # their validation and the verdict do not depend on them, so it is not recorded for rebuilds)
    explain: bool = True
    # Set when the config comes from a manifest: the export refuses a target profile that changed since, as
    # it would not rebuild the same bytes.
    target_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        if not (MIN_OPSET <= self.opset <= MAX_OPSET):
            raise UsageError(f"--opset {self.opset} is not supported", f"the exporter writes opsets {MIN_OPSET}.."
                             f"{MAX_OPSET} (QDQ INT8 and the dynamo exporter need >= {MIN_OPSET})")
        if not self.formats:
            raise UsageError("no output format given", "use --format onnx, pte or onnx,pte")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise UsageError(f"unknown format {fmt!r}", f"choose from {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise UsageError(f"format listed twice: {','.join(self.formats)}")
        if not (0 < self.eval_fraction < 1):
            raise UsageError(f"eval fraction must be in (0, 1), got {self.eval_fraction}")
        if self.max_eval_samples < 1:
            raise UsageError("max_eval_samples must be >= 1")
        if self.outliers not in OUTLIER_MODES:
            raise UsageError(f"unknown outlier mode {self.outliers!r}", f"use one of {', '.join(OUTLIER_MODES)}")
        if self.rounding not in ROUNDING_MODES:
            raise UsageError(f"unknown rounding {self.rounding!r}", f"use one of {', '.join(ROUNDING_MODES)}")
        if self.version != CONFIG_VERSION:
            raise UsageError(f"config version {self.version} is not supported (this edgeq reads {CONFIG_VERSION})")
