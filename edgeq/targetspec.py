"""Target profile types: a board or phone as data (CPU, budgets, schemes, stage list). Parsed by :mod:`edgeq.targets`.

Each output format has its own table in a profile (``[formats.onnx]``, ``[formats.executorch]``), parsed into that
format's :class:`FormatSpec` subclass and kept in ``Target.formats`` under the table's name. A backend (and any stage
or check about one format) looks its spec up with ``target.spec(OnnxScheme)``; a new format is a new spec class
listed in :data:`FORMAT_SPECS` and a new table, never a new ``Target`` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, TypeVar

from edgeq.config import Budget, QuantOptions
from edgeq.errors import TargetError
from edgeq.jsontypes import JSONObject


@dataclass(frozen=True)
class CpuSpec:
    arch: str  # "aarch64" | "x86_64"
    name: str  # marketing name, e.g. "Cortex-A72"
    isa: str  # e.g. "ARMv8.0-A"
    qemu_model: str | None  # qemu -cpu model for emulation (None: no emulation, e.g. x86 host)
    features: tuple[str, ...]  # /proc/cpuinfo "Features" flags (ARM) or relevant x86 flags
    cores: int
    cpuinfo_implementer: str | None = None  # e.g. "0x41" (ARM)
    cpuinfo_part: str | None = None  # e.g. "0xd08" (Cortex-A72)
    cpuinfo_variant: str | None = None
    cpuinfo_revision: str | None = None
    cpuinfo_architecture: str | None = None


@dataclass(frozen=True)
class FormatSpec:
    """One format's table of a target profile; ``table`` is its key in ``Target.formats`` (``[formats.<table>]``)."""

    table: ClassVar[str]

    def check(self, where: str) -> None:
        """Cross-field rules the per-key types cannot express (typed error naming ``where``); none by default."""


@dataclass(frozen=True)
class OnnxScheme(FormatSpec):
    table: ClassVar[str] = "onnx"

    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    calibration: str
    execution_providers: tuple[str, ...]  # to check for usability, e.g. ("NNAPI",), ("CoreML",)
    reason: str  # why this scheme on this ISA (recorded in the manifest)
    # Optional second scheme, used when the machine running the model (the host, for host-run targets) has any of
    # these CPU flags — x86-64: VNNI accumulates u8 x s8 products without saturation, so no reduce_range.
    if_host_has: tuple[str, ...] = ()
    if_host_activation_type: str | None = None
    if_host_reduce_range: bool | None = None
    if_host_reason: str | None = None


KNOWN_PARTITIONERS = ("xnnpack",)  # ExecuTorch partitioners edgeq lowers with (Vulkan/CoreML need other toolchains)


@dataclass(frozen=True)
class ExecutorchSpec(FormatSpec):
    table: ClassVar[str] = "executorch"

    partitioner: str  # the ExecuTorch partitioner the .pte is lowered with (see KNOWN_PARTITIONERS)
    per_channel: bool = True
    segment_alignment: int | None = None  # bytes, e.g. 16384 for Android 15+ 16 KB pages

    def check(self, where: str) -> None:
        if self.partitioner not in KNOWN_PARTITIONERS:
            raise TargetError(f"{where}: unknown partitioner {self.partitioner!r}",
                              f"edgeq lowers .pte files with: {', '.join(KNOWN_PARTITIONERS)}")
        align = self.segment_alignment
        if align is not None and (align <= 0 or align & (align - 1)):
            raise TargetError(f"{where}: 'segment_alignment' must be a power of two, got {align}")


# The format tables a profile may have, by table name. Every profile names all of them today (the loader says which
# is missing); the ONNX table also gives the quantization defaults the other formats start from (quant_defaults).
FORMAT_SPECS: Mapping[str, type[FormatSpec]] = {s.table: s for s in (OnnxScheme, ExecutorchSpec)}

_S = TypeVar("_S", bound=FormatSpec)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    os: str  # linux | android | ios
    abi: str  # linux-aarch64 | android-arm64-v8a | ios-arm64 | linux-x86_64
    cpu: CpuSpec
    ram_mb: int
    storage_mb: int
    formats: Mapping[str, FormatSpec] = field(hash=False)  # table name -> that format's spec (FORMAT_SPECS)
    passes: tuple[str, ...]
    validation: Budget
    gpu_delegate: str | None = None  # e.g. "vulkan", "metal", "gpu"; enables the fp16 variant
    default_runner: str = "host"  # "emulator" for ARM targets once set up
    sources: tuple[str, ...] = ()  # where the hardware facts come from
    # [validation] runner_timeout_s: each artifact run (host child, emulator, C++ runner) is killed after this
    runner_timeout_s: float = 600.0
    path: str = ""
    sha256: str = ""

    @property
    def is_arm(self) -> bool:
        return self.cpu.arch == "aarch64"

    def spec(self, kind: type[_S]) -> _S:
        """This target's table for the format ``kind`` describes (``target.spec(ExecutorchSpec).partitioner``)."""
        found = self.formats.get(kind.table)
        if not isinstance(found, kind):
            raise TargetError(f"target {self.name!r} has no [formats.{kind.table}] table",
                              f"add one to {self.path or 'the profile'}; see targets/raspberry-pi-4.toml")
        return found

    def with_spec(self, spec: FormatSpec) -> Target:
        """This target with ``spec`` in place of its format's table (what a hand-edited profile would give)."""
        return replace(self, formats={**self.formats, spec.table: spec})

    def quant_defaults(self) -> QuantOptions:
        onnx = self.spec(OnnxScheme)
        return QuantOptions(calibration=onnx.calibration, per_channel=onnx.per_channel,  # type: ignore[arg-type]
                            activation_type=onnx.activation_type,  # type: ignore[arg-type]
                            weight_type=onnx.weight_type,  # type: ignore[arg-type]
                            reduce_range=onnx.reduce_range)

    def summary(self) -> JSONObject:
        return {"name": self.name, "abi": self.abi, "cpu": self.cpu.name, "isa": self.cpu.isa,
                "qemu_model": self.cpu.qemu_model, "features": list(self.cpu.features), "ram_mb": self.ram_mb,
                "storage_mb": self.storage_mb, "sha256": self.sha256, "path": self.path}
