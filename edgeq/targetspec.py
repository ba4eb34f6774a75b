"""Target profile types: a board or phone as data (CPU, budgets, schemes, stage list). Parsed by :mod:`edgeq.targets`."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.config import Budget, QuantOptions
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
class OnnxScheme:
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


@dataclass(frozen=True)
class ExecutorchSpec:
    partitioner: str  # the ExecuTorch partitioner the .pte is lowered with (see KNOWN_PARTITIONERS)
    per_channel: bool = True
    segment_alignment: int | None = None  # bytes, e.g. 16384 for Android 15+ 16 KB pages


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    os: str  # linux | android | ios
    abi: str  # linux-aarch64 | android-arm64-v8a | ios-arm64 | linux-x86_64
    cpu: CpuSpec
    ram_mb: int
    storage_mb: int
    onnx: OnnxScheme
    executorch: ExecutorchSpec
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

    def quant_defaults(self) -> QuantOptions:
        return QuantOptions(calibration=self.onnx.calibration, per_channel=self.onnx.per_channel,  # type: ignore[arg-type]
                            activation_type=self.onnx.activation_type,  # type: ignore[arg-type]
                            weight_type=self.onnx.weight_type,  # type: ignore[arg-type]
                            reduce_range=self.onnx.reduce_range)

    def summary(self) -> JSONObject:
        return {"name": self.name, "abi": self.abi, "cpu": self.cpu.name, "isa": self.cpu.isa,
                "qemu_model": self.cpu.qemu_model, "features": list(self.cpu.features), "ram_mb": self.ram_mb,
                "storage_mb": self.storage_mb, "sha256": self.sha256, "path": self.path}
