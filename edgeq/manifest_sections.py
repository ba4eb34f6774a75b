"""The typed sections of ``edgeq.json`` (:class:`edgeq.manifest.Manifest` holds them): one frozen dataclass per
section whose keys are fixed, each with ``from_json`` (wrong types raise ManifestError naming the key) and
``to_json`` (the keys in the order edgeq has always written them, so a manifest read and written again keeps its
bytes: signatures and ``edgeq check`` hash them)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from edgeq._version import __version__
from edgeq.errors import ManifestError
from edgeq.hashing import sha256_file
from edgeq.jsontypes import (
    JSONObject,
    JSONValue,
    get_bool,
    get_float_or_none,
    get_int,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
    get_str_or_none,
    get_strs,
)
from edgeq.targetspec import Target

ROLES = ("baseline", "candidate", "auxiliary")  # baseline: float artifacts; auxiliary: derived, not validated (.ort, .bpte)
_DEPENDENCIES = ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "torchao", "numpy")


@dataclass(frozen=True)
class Validation:
    runner: str
    machine: str
    cpu_model: str
    features: list[str]
    emulated: bool
    metrics: JSONObject
    budget_check: JSONObject
    latency_ms: float | None
    latency_kind: str
    runtime: str
    # How latency_ms was measured when not by the runner alone: the host's paired measurement (edgeq.validate.latency)
    # records method, threads, rounds and ratio_to_float here. Optional: older manifests lack it.
    latency_detail: JSONObject | None = None
    board: str | None = None  # the fleet board's name (edgeq.validate.fleet) when the runner is one of a fleet

    def to_dict(self) -> JSONObject:
        d: JSONObject = {"runner": self.runner, "machine": self.machine, "cpu_model": self.cpu_model,
                         "features": self.features, "emulated": self.emulated,
                         "metrics": self.metrics, "budget_check": self.budget_check, "latency_ms": self.latency_ms,
                         "latency_kind": self.latency_kind, "runtime": self.runtime,
                         "latency_detail": self.latency_detail}
        if self.board is not None:  # only fleet runs name a board; other manifests keep their shape
            d["board"] = self.board
        return d

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> Validation:
        """A validation read back from edgeq.json; a field of the wrong type raises ManifestError."""
        features = d.get("features")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ManifestError("validation 'features' must be a list of strings",
                                "the manifest is malformed or was edited; re-run edgeq export")
        return Validation(runner=get_str(d, "runner"), machine=get_str(d, "machine"),
                          cpu_model=get_str(d, "cpu_model"), features=[str(f) for f in features],
                          emulated=get_bool(d, "emulated"), metrics=get_object(d, "metrics"),
                          budget_check=get_object(d, "budget_check"), latency_ms=get_float_or_none(d, "latency_ms"),
                          latency_kind=get_str(d, "latency_kind"), runtime=get_str(d, "runtime"),
                          latency_detail=get_object_or_none(d, "latency_detail"), board=get_str_or_none(d, "board"))


@dataclass(frozen=True)
class Artifact:
    """One shipped file. Frozen: an update is a new Artifact (``refresh``, ``with_detail``, ``with_validation``,
    ``dataclasses.replace``) put back where the old one was held (``BuildState.artifacts``); ``details`` and
    ``quantization`` are replaced whole, never edited in place, so an earlier state never sees a later change."""

    name: str  # unique within a manifest, e.g. "onnx-int8"
    path: str  # relative to the output directory
    format: str  # onnx | ort | pte | bpte | ...
    precision: str  # fp32 | fp16 | int8-static | int8-dynamic | mixed
    role: str
    bytes: int = 0
    sha256: str = ""
    quantization: JSONObject | None = None
    details: JSONObject = field(default_factory=dict)
    validations: tuple[Validation, ...] = ()

    def refresh(self, outdir: Path) -> Artifact:
        """This artifact with the size and sha256 of its file as written now."""
        p = outdir / self.path
        return replace(self, bytes=p.stat().st_size, sha256=sha256_file(p))

    def with_detail(self, key: str, value: JSONValue) -> Artifact:
        """``details[key] = value`` on a copy (an existing key keeps its place, so the JSON order is unchanged)."""
        return replace(self, details={**self.details, key: value})

    def with_validation(self, validation: Validation) -> Artifact:
        return replace(self, validations=(*self.validations, validation))

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "path": self.path, "format": self.format, "precision": self.precision,
                "role": self.role, "bytes": self.bytes, "sha256": self.sha256, "quantization": self.quantization,
                "details": self.details, "validations": [v.to_dict() for v in self.validations]}

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> Artifact:
        """An artifact read back from edgeq.json (or a record built in memory); wrong types raise ManifestError."""
        return Artifact(name=get_str(d, "name"), path=get_str(d, "path"), format=get_str(d, "format"),
                        precision=get_str(d, "precision"), role=get_str(d, "role"),
                        bytes=get_int(d, "bytes") if "bytes" in d else 0,
                        sha256=get_str(d, "sha256") if "sha256" in d else "",
                        quantization=get_object_or_none(d, "quantization"),
                        details=get_object(d, "details") if "details" in d else {},
                        validations=tuple(Validation.from_dict(v) for v in get_objects(d, "validations")))


def dependency_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def edgeq_version() -> str:
    return __version__


@dataclass(frozen=True)
class Tool:
    """Who wrote the manifest, and when: the top-level keys ``created``, ``edgeq_version``, ``dependencies``."""

    created: str  # ISO 8601, seconds, UTC
    edgeq_version: str
    # package -> installed version (None: not installed). Open by design: the packages an edgeq version lists.
    dependencies: dict[str, str | None]

    @staticmethod
    def now() -> Tool:
        return Tool(datetime.now(UTC).isoformat(timespec="seconds"), edgeq_version(), dependency_versions())

    @staticmethod
    def from_json(m: Mapping[str, object]) -> Tool:
        deps = get_object(m, "dependencies")
        for name, version in deps.items():
            if version is not None and not isinstance(version, str):
                raise ManifestError(f"'dependencies.{name}' must be a version string or null",
                                    "the manifest is malformed or was edited; re-run edgeq export")
        return Tool(get_str(m, "created"), get_str(m, "edgeq_version"),
                    {k: v for k, v in deps.items() if v is None or isinstance(v, str)})


@dataclass(frozen=True)
class Source:
    """``source``: the model the artifacts were built from."""

    ref: str  # what the user passed (a path, pkg.module:factory, a model id)
    kind: str
    sha256: str | None  # None where there is no single file to hash (a factory, a language model folder)

    def to_json(self) -> JSONObject:
        return {"ref": self.ref, "kind": self.kind, "sha256": self.sha256}

    @staticmethod
    def from_json(d: Mapping[str, object]) -> Source:
        return Source(get_str(d, "ref"), get_str(d, "kind"), get_str_or_none(d, "sha256"))


@dataclass(frozen=True)
class TargetInfo:
    """``target``: the profile the artifacts were built for, pinned by its sha256 (``Target.summary``)."""

    name: str
    abi: str
    cpu: str
    isa: str
    qemu_model: str | None
    features: tuple[str, ...]
    ram_mb: int
    storage_mb: int
    sha256: str
    path: str

    @staticmethod
    def of(target: Target) -> TargetInfo:
        return TargetInfo.from_json(target.summary())

    def to_json(self) -> JSONObject:
        return {"name": self.name, "abi": self.abi, "cpu": self.cpu, "isa": self.isa, "qemu_model": self.qemu_model,
                "features": list(self.features), "ram_mb": self.ram_mb, "storage_mb": self.storage_mb,
                "sha256": self.sha256, "path": self.path}

    @staticmethod
    def from_json(d: Mapping[str, object]) -> TargetInfo:
        return TargetInfo(get_str(d, "name"), get_str(d, "abi"), get_str(d, "cpu"), get_str(d, "isa"),
                          get_str_or_none(d, "qemu_model"), tuple(get_strs(d, "features")), get_int(d, "ram_mb"),
                          get_int(d, "storage_mb"), get_str(d, "sha256"), get_str(d, "path"))


@dataclass(frozen=True)
class FileRef:
    """A file of the folder the manifest pins by its sha256 (``validation_data.inputs`` / ``.reference``)."""

    path: str  # relative to the manifest's folder
    sha256: str
    kind: str | None = None  # the reference's: what it holds (written for the reference only)

    def to_json(self) -> JSONObject:
        d: JSONObject = {"path": self.path, "sha256": self.sha256}
        if self.kind is not None:
            d["kind"] = self.kind
        return d

    @staticmethod
    def from_json(d: Mapping[str, object]) -> FileRef:
        return FileRef(get_str(d, "path"), get_str(d, "sha256"), get_str_or_none(d, "kind"))


@dataclass(frozen=True)
class ValidationData:
    """``validation_data``: the held-out inputs and the float reference every validation compares against."""

    inputs: FileRef
    reference: FileRef
    samples: int
    has_labels: bool
    source: str  # where the samples came from, for people

    def to_json(self) -> JSONObject:
        return {"inputs": self.inputs.to_json(), "reference": self.reference.to_json(), "samples": self.samples,
                "has_labels": self.has_labels, "source": self.source}

    @staticmethod
    def from_json(d: Mapping[str, object]) -> ValidationData:
        return ValidationData(FileRef.from_json(get_object(d, "inputs")), FileRef.from_json(get_object(d, "reference")),
                              get_int(d, "samples"), get_bool(d, "has_labels"), get_str(d, "source"))


@dataclass(frozen=True)
class FileEntry:
    """One row of ``files``: a file of the folder no other section describes (reports, ...), hashed by ``seal``."""

    path: str
    bytes: int
    sha256: str

    def to_json(self) -> JSONObject:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}

    @staticmethod
    def from_json(d: Mapping[str, object]) -> FileEntry:
        return FileEntry(get_str(d, "path"), get_int(d, "bytes"), get_str(d, "sha256"))
