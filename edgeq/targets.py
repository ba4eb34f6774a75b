"""Target profiles: data in ``targets/*.toml``, validated on load (unknown or missing keys name file and key)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.config import Budget, QuantOptions
from edgeq.errors import TargetError
from edgeq.hashing import sha256_bytes

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


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
    quant_format: str  # "QDQ"
    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    calibration: str
    execution_providers: tuple[str, ...]  # to check for usability, e.g. ("NNAPI",), ("CoreML",)
    reason: str  # why this scheme on this ISA (recorded in the manifest)
    # Optional second scheme, used when the CPU running the model has any of these flags (x86-64: VNNI).
    if_host_has: tuple[str, ...] = ()
    if_host_activation_type: str | None = None
    if_host_reduce_range: bool | None = None
    if_host_reason: str | None = None


@dataclass(frozen=True)
class ExecutorchSpec:
    partitioner: str  # "xnnpack"
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
    formats: tuple[str, ...]
    onnx: OnnxScheme
    executorch: ExecutorchSpec
    passes: tuple[str, ...]
    validation: Budget
    gpu_delegate: str | None = None  # e.g. "vulkan", "metal", "gpu"; enables the fp16 variant
    default_runner: str = "host"  # "emulator" for ARM targets once set up
    sources: tuple[str, ...] = ()  # where the hardware facts come from
    path: str = ""
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_arm(self) -> bool:
        return self.cpu.arch == "aarch64"

    def quant_defaults(self) -> QuantOptions:
        return QuantOptions(calibration=self.onnx.calibration, per_channel=self.onnx.per_channel,  # type: ignore[arg-type]
                            activation_type=self.onnx.activation_type,  # type: ignore[arg-type]
                            weight_type=self.onnx.weight_type,  # type: ignore[arg-type]
                            reduce_range=self.onnx.reduce_range)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "abi": self.abi, "cpu": self.cpu.name, "isa": self.cpu.isa,
                "qemu_model": self.cpu.qemu_model, "features": list(self.cpu.features), "ram_mb": self.ram_mb,
                "storage_mb": self.storage_mb, "sha256": self.sha256, "path": self.path}


# --- loading ---------------------------------------------------------------------------------------------

_TOP_REQUIRED = {"name", "description", "os", "abi", "ram_mb", "storage_mb", "formats", "cpu", "onnx",
                 "executorch", "passes", "validation"}
_TOP_OPTIONAL = {"gpu_delegate", "default_runner", "sources"}


def _check_keys(where: str, table: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(table))
    if missing:
        raise TargetError(f"{where}: missing key(s) {', '.join(missing)}",
                          "see targets/raspberry-pi-4.toml for a complete example")
    unknown = sorted(set(table) - required - optional)
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {', '.join(unknown)}",
                          f"valid keys here: {', '.join(sorted(required | optional))}")


def _dc_keys(cls: type) -> tuple[set[str], set[str]]:
    req, opt = set(), set()
    for f in fields(cls):
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        (opt if has_default else req).add(f.name)
    return req, opt


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "str": (str,), "bool": (bool,), "float": (float, int),
                                              "None": (type(None),)}


def _type_ok(annotation: str, value: Any) -> bool:
    """Check a TOML value against a dataclass field annotation written as a string (``int | None``,
    ``tuple[str, ...]``). Unknown annotations are accepted; bool is not an int here (TOML has both)."""
    for part in (p.strip() for p in annotation.split("|")):
        if part.startswith("tuple["):
            if isinstance(value, tuple) and all(isinstance(x, str) for x in value):
                return True
            continue
        types = _SIMPLE_TYPES.get(part)
        if types is None:
            return True
        if isinstance(value, bool) and bool not in types:
            continue
        if isinstance(value, types):
            return True
    return False


def _build(cls: type, where: str, table: Any, convert: dict[str, Any] | None = None) -> Any:
    if not isinstance(table, dict):
        raise TargetError(f"{where}: expected a table, got {type(table).__name__}")
    req, opt = _dc_keys(cls)
    _check_keys(where, table, req, opt)
    annotations = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "") for f in fields(cls)}
    kwargs = {}
    for k, v in table.items():
        if isinstance(v, list):
            v = tuple(v)
        if not _type_ok(annotations.get(k, ""), v):
            raise TargetError(f"{where}: key '{k}' must be {annotations[k]}, got {type(v).__name__} {v!r}",
                              "see targets/raspberry-pi-4.toml for a complete example")
        if convert and k in convert:
            v = convert[k](v)
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise TargetError(f"{where}: {e}") from e


def parse_target(text: str, path: str) -> Target:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: not valid TOML ({e})") from e
    _check_keys(path, raw, _TOP_REQUIRED, _TOP_OPTIONAL)
    cpu = _build(CpuSpec, f"{path} [cpu]", raw["cpu"])
    onnx = _build(OnnxScheme, f"{path} [onnx]", raw["onnx"])
    et = _build(ExecutorchSpec, f"{path} [executorch]", raw["executorch"])
    try:
        budget = _build(Budget, f"{path} [validation]", raw["validation"])
    except Exception as e:
        if isinstance(e, TargetError):
            raise
        raise TargetError(f"{path} [validation]: {e}") from e
    passes = raw["passes"]
    if not isinstance(passes, list) or not all(isinstance(p, str) for p in passes):
        raise TargetError(f"{path}: 'passes' must be a list of pass names")
    from edgeq.passes import registry

    unknown = [p for p in passes if p not in registry.pass_names()]
    if unknown:
        raise TargetError(f"{path}: unknown pass(es) {', '.join(unknown)}",
                          f"registered passes: {', '.join(registry.pass_names())}")
    for k in ("name", "description", "os", "abi"):
        if not isinstance(raw[k], str):
            raise TargetError(f"{path}: '{k}' must be a string")
    for k in ("ram_mb", "storage_mb"):
        if not isinstance(raw[k], int) or raw[k] <= 0:
            raise TargetError(f"{path}: '{k}' must be a positive integer (MB)")
    if cpu.arch not in ("aarch64", "x86_64"):
        raise TargetError(f"{path} [cpu]: arch must be aarch64 or x86_64, got {cpu.arch!r}")
    _check_semantics(path, raw, cpu, et, passes)
    return Target(
        name=raw["name"], description=raw["description"], os=raw["os"], abi=raw["abi"], cpu=cpu,
        ram_mb=raw["ram_mb"], storage_mb=raw["storage_mb"], formats=tuple(raw["formats"]), onnx=onnx,
        executorch=et, passes=tuple(passes), validation=budget, gpu_delegate=raw.get("gpu_delegate"),
        default_runner=raw.get("default_runner", "host"), sources=tuple(raw.get("sources", ())),
        path=path, sha256=sha256_bytes(text.encode()),
    )


KNOWN_OS = ("linux", "android", "ios")
KNOWN_FORMATS = ("onnx", "pte")
ARM_CPUINFO_KEYS = ("cpuinfo_implementer", "cpuinfo_part", "cpuinfo_variant", "cpuinfo_revision",
                    "cpuinfo_architecture")


def _check_semantics(path: str, raw: dict[str, Any], cpu: CpuSpec, et: ExecutorchSpec, passes: list[str]) -> None:
    """Cross-field rules the per-key types cannot express."""
    if raw["os"] not in KNOWN_OS:
        raise TargetError(f"{path}: 'os' must be one of {', '.join(KNOWN_OS)}, got {raw['os']!r}")
    formats = raw["formats"]
    if not isinstance(formats, list) or not formats or any(f not in KNOWN_FORMATS for f in formats):
        raise TargetError(f"{path}: 'formats' must be a non-empty list of {', '.join(KNOWN_FORMATS)}, got {formats!r}")
    dup = sorted({p for p in passes if passes.count(p) > 1})
    if dup:
        raise TargetError(f"{path}: pass(es) listed twice: {', '.join(dup)}")
    if cpu.cores < 1:
        raise TargetError(f"{path} [cpu]: 'cores' must be >= 1")
    if cpu.arch == "aarch64":
        # The emulator synthesizes /proc/cpuinfo from these (ORT's aarch64 build reads it at import).
        missing = [k for k in ("qemu_model", *ARM_CPUINFO_KEYS) if not getattr(cpu, k)]
        if missing:
            raise TargetError(f"{path} [cpu]: ARM targets need {', '.join(missing)}",
                              "qemu_model is a `qemu-aarch64-static -cpu help` name; cpuinfo_* are the MIDR fields")
        for k in ("cpuinfo_implementer", "cpuinfo_part", "cpuinfo_variant"):
            v = getattr(cpu, k)
            if not (isinstance(v, str) and v.startswith("0x") and all(c in "0123456789abcdef" for c in v[2:].lower())
                    and len(v) > 2):
                raise TargetError(f"{path} [cpu]: '{k}' must be a hex string like 0xd08, got {v!r}")
    if et.segment_alignment is not None and (et.segment_alignment <= 0
                                             or et.segment_alignment & (et.segment_alignment - 1)):
        raise TargetError(f"{path} [executorch]: 'segment_alignment' must be a power of two, "
                          f"got {et.segment_alignment}")


def targets_dir() -> Path:
    return Path(os.environ.get("EDGEQ_TARGETS_DIR", TARGETS_DIR))


def list_targets() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """Load a bundled target by name (``raspberry-pi-5``) or a user TOML file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise TargetError(f"target file not found: {p}")
        return parse_target(p.read_text(), str(p))
    f = targets_dir() / f"{name_or_path}.toml"
    if not f.is_file():
        import difflib

        names = list_targets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TargetError(f"unknown target {name_or_path!r}", f"{hint}known targets: {', '.join(names)}")
    return parse_target(f.read_text(), f"targets/{f.name}")
