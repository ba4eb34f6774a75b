"""Target profiles: data in ``targets/*.toml``, validated on load (unknown or missing keys name file and key)."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import TypeVar

from edgeq.config import Budget
from edgeq.errors import PipelineError, TargetError
from edgeq.hashing import sha256_bytes
from edgeq.pipeline.stage import get_stage, stage_names, validate_order
from edgeq.resources import profiles_dir
from edgeq.targetspec import FORMAT_SPECS, CpuSpec, FormatSpec, Target

# --- loading ---------------------------------------------------------------------------------------------

_TOP_REQUIRED = {"name", "description", "os", "abi", "ram_mb", "storage_mb", "cpu", "formats", "passes",
                 "validation"}
_TOP_OPTIONAL = {"gpu_delegate", "default_runner", "sources"}


# Keys older profiles carried that decided nothing; named so a user file gets a precise fix, not "unknown key".
REMOVED_KEYS = {"formats": "choose formats per export (--format onnx,pte / PipelineConfig.formats); "
                           "[formats.onnx] / [formats.executorch] tables hold each format's settings",
                "quant_format": "edgeq always writes QDQ ONNX models (the [formats.onnx] table sets its types)"}


def _check_keys(where: str, table: Mapping[str, object], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(table))
    if missing:
        raise TargetError(f"{where}: missing key(s) {', '.join(missing)}",
                          "see targets/raspberry-pi-4.toml for a complete example")
    unknown = sorted(set(table) - required - optional)
    removed = [k for k in unknown if k in REMOVED_KEYS]
    if removed:
        raise TargetError(f"{where}: key '{removed[0]}' is no longer part of a target profile",
                          f"delete it: {REMOVED_KEYS[removed[0]]}")
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {', '.join(unknown)}",
                          f"valid keys here: {', '.join(sorted(required | optional))}")


_Spec = TypeVar("_Spec", CpuSpec, FormatSpec, Budget)  # the tables a profile is built from


def _dc_keys(cls: type) -> tuple[set[str], set[str]]:
    req: set[str] = set()
    opt: set[str] = set()
    for f in fields(cls):
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        (opt if has_default else req).add(f.name)
    return req, opt


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "str": (str,), "bool": (bool,), "float": (float, int),
                                              "None": (type(None),)}


def _type_ok(annotation: str, value: object) -> bool:
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


def _build(cls: type[_Spec], where: str, table: object) -> _Spec:
    if not isinstance(table, dict):
        raise TargetError(f"{where}: expected a table, got {type(table).__name__}")
    req, opt = _dc_keys(cls)
    _check_keys(where, table, req, opt)
    annotations = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "") for f in fields(cls)}
    kwargs: dict[str, object] = {}  # each value checked against its field's annotation (_type_ok) below
    for k, v in table.items():
        if isinstance(v, list):
            v = tuple(v)
        if not _type_ok(annotations.get(k, ""), v):
            raise TargetError(f"{where}: key '{k}' must be {annotations[k]}, got {type(v).__name__} {v!r}",
                              "see targets/raspberry-pi-4.toml for a complete example")
        kwargs[k] = v
    # every value was checked against its field's annotation above, at run time where mypy cannot follow
    make: Callable[..., _Spec] = cls
    try:
        return make(**kwargs)
    except (TypeError, ValueError) as e:
        raise TargetError(f"{where}: {e}") from e


RUNNER_TIMEOUT_KEY = "runner_timeout_s"  # in [validation]: not a budget, so not part of Budget
DEFAULT_RUNNER_TIMEOUT_S = 600.0  # a profile without the key: ten minutes per artifact run


def _runner_timeout(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise TargetError(f"{path} [validation]: {RUNNER_TIMEOUT_KEY} must be a number of seconds in (0, 86400], "
                          f"got {value!r}", "e.g. runner_timeout_s = 600")
    return float(value)


def _current_layout(path: str, raw: Mapping[str, object]) -> tuple[dict[str, object], str]:
    """``raw``'s top-level keys with its format tables under ``formats``, and the prefix that names one in errors.

    Profiles written before ``[formats.onnx]`` had top-level ``[onnx]`` / ``[executorch]`` tables; they are read
    the same way (their bytes, so their sha256, unchanged), and a list-valued ``formats`` is the old format choice."""
    legacy = [k for k in FORMAT_SPECS if k in raw]
    if "formats" in raw and not isinstance(raw["formats"], dict):
        raise TargetError(f"{path}: key 'formats' is no longer part of a target profile",
                          f"delete it: {REMOVED_KEYS['formats']}")
    if not legacy:
        return dict(raw), "formats."
    if "formats" in raw:
        raise TargetError(f"{path}: both a [formats] table and a top-level [{legacy[0]}] table",
                          f"move [{legacy[0]}] to [formats.{legacy[0]}]")
    rest = {k: v for k, v in raw.items() if k not in legacy}
    return {**rest, "formats": {k: raw[k] for k in legacy}}, ""


def _format_specs(path: str, tables: object, prefix: str) -> dict[str, FormatSpec]:
    """One spec per format table (``[formats.onnx]`` -> OnnxScheme), each checked by its own rules."""
    if not isinstance(tables, dict):
        raise TargetError(f"{path}: 'formats' must hold one table per format, e.g. [formats.onnx]")
    unknown = sorted(set(tables) - set(FORMAT_SPECS))
    if unknown:
        raise TargetError(f"{path}: unknown format table(s) {', '.join(f'[{prefix}{k}]' for k in unknown)}",
                          f"known formats: {', '.join(FORMAT_SPECS)}")
    missing = [k for k in FORMAT_SPECS if k not in tables]
    if missing:
        raise TargetError(f"{path}: missing table(s) {', '.join(f'[{prefix}{k}]' for k in missing)}",
                          "see targets/raspberry-pi-4.toml for a complete example")
    specs: dict[str, FormatSpec] = {}
    for name, cls in FORMAT_SPECS.items():
        where = f"{path} [{prefix}{name}]"
        specs[name] = _build(cls, where, tables[name])
        specs[name].check(where)
    return specs


def with_runner_timeout(target: Target, seconds: float | None) -> Target:
    """``target`` with its per-run deadline replaced by ``--runner-timeout`` (None: keep the profile's)."""
    if seconds is None:
        return target
    return replace(target, runner_timeout_s=_runner_timeout("--runner-timeout", seconds))


def parse_target(text: str, path: str) -> Target:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: not valid TOML ({e})") from e
    layout, table_prefix = _current_layout(path, raw)
    _check_keys(path, layout, _TOP_REQUIRED, _TOP_OPTIONAL)
    cpu = _build(CpuSpec, f"{path} [cpu]", raw["cpu"])
    formats = _format_specs(path, layout["formats"], table_prefix)
    validation = dict(raw["validation"]) if isinstance(raw["validation"], dict) else raw["validation"]
    timeout = _runner_timeout(path, validation.pop(RUNNER_TIMEOUT_KEY, DEFAULT_RUNNER_TIMEOUT_S)
                              if isinstance(validation, dict) else DEFAULT_RUNNER_TIMEOUT_S)
    try:
        budget = _build(Budget, f"{path} [validation]", validation)
    except Exception as e:
        if isinstance(e, TargetError):
            raise
        raise TargetError(f"{path} [validation]: {e}") from e
    passes = raw["passes"]
    if not isinstance(passes, list) or not all(isinstance(p, str) for p in passes):
        raise TargetError(f"{path}: 'passes' must be a list of pass names")
    unknown = [p for p in passes if p not in stage_names()]
    if unknown:
        raise TargetError(f"{path}: unknown pass(es) {', '.join(unknown)}",
                          f"registered stages: {', '.join(stage_names())}")
    for k in ("name", "description", "os", "abi"):
        if not isinstance(raw[k], str):
            raise TargetError(f"{path}: '{k}' must be a string")
    for k in ("ram_mb", "storage_mb"):
        if not isinstance(raw[k], int) or raw[k] <= 0:
            raise TargetError(f"{path}: '{k}' must be a positive integer (MB)")
    if cpu.arch not in ("aarch64", "x86_64"):
        raise TargetError(f"{path} [cpu]: arch must be aarch64 or x86_64, got {cpu.arch!r}")
    _check_semantics(path, raw, cpu, passes)
    return Target(
        name=raw["name"], description=raw["description"], os=raw["os"], abi=raw["abi"], cpu=cpu,
        ram_mb=raw["ram_mb"], storage_mb=raw["storage_mb"], formats=formats, passes=tuple(passes), validation=budget, gpu_delegate=raw.get("gpu_delegate"),
        default_runner=raw.get("default_runner", "host"), sources=tuple(raw.get("sources", ())),
        runner_timeout_s=timeout,
        path=path, sha256=sha256_bytes(text.encode()),
    )


KNOWN_OS = ("linux", "android", "ios")
ARM_CPUINFO_KEYS = ("cpuinfo_implementer", "cpuinfo_part", "cpuinfo_variant", "cpuinfo_revision",
                    "cpuinfo_architecture")


def _check_semantics(path: str, raw: Mapping[str, object], cpu: CpuSpec, passes: list[str]) -> None:
    """Cross-field rules the per-key types cannot express (each format's own: ``FormatSpec.check``)."""
    if raw["os"] not in KNOWN_OS:
        raise TargetError(f"{path}: 'os' must be one of {', '.join(KNOWN_OS)}, got {raw['os']!r}")
    dup = sorted({p for p in passes if passes.count(p) > 1})
    if dup:
        raise TargetError(f"{path}: pass(es) listed twice: {', '.join(dup)}")
    try:
        validate_order(tuple(get_stage(p) for p in passes), path)
    except PipelineError as e:
        raise TargetError(e.cause, e.hint) from e
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


def targets_dir() -> Path:
    """The bundled profiles (package data, ``edgeq/profiles``), or ``$EDGEQ_TARGETS_DIR`` when set."""
    env = os.environ.get("EDGEQ_TARGETS_DIR")
    return Path(env) if env else profiles_dir()


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
        names = list_targets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TargetError(f"unknown target {name_or_path!r}", f"{hint}known targets: {', '.join(names)}")
    return parse_target(f.read_text(), f"targets/{f.name}")


_TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def packaged_target(name: object) -> Target:
    """A target profile shipped with edgeq, by name; a name from a manifest never reaches the file system."""
    if not isinstance(name, str) or not _TARGET_NAME.match(name) or name not in list_targets():
        raise TargetError(f"the manifest names target {name!r}, which is not a packaged profile",
                          "pass --target NAME or --target FILE.toml to check against a profile you choose")
    f = targets_dir() / f"{name}.toml"
    return parse_target(f.read_text(), f"targets/{f.name}")


def target_for(name: object) -> Target:
    """The target for ``validate``: the packaged profile the manifest names (by name only: ``check`` and
    ``validate`` never read its path), with the hint for a folder exported elsewhere."""
    try:
        return packaged_target(name)
    except TargetError as e:
        raise TargetError(e.cause, "re-export with a packaged target, or use `edgeq check --target FILE.toml`") from e
