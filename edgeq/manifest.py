"""``edgeq.json``: the versioned manifest next to the artifacts. Apps read it; ``edgeq check`` re-checks it.

Schema (version 1) — every key below is always present; ``null`` where not applicable:
  schema, schema_version, created, edgeq_version, dependencies{name: version}
  source{ref, kind, sha256}; target{name, abi, cpu, isa, qemu_model, features, ram_mb, storage_mb, sha256, path}
  config{recorded{every PipelineConfig option but output/force: rebuilds the artifacts, see edgeq.load_config},
         resolved_quant{format: QuantOptions}, formats, quant, eval_fraction, seed, ...}
  budget{max_accuracy_drop, min_cosine, min_sqnr, min_top1_agreement}
  signature{inputs[TensorSpec], outputs[TensorSpec]}
  validation_data{inputs{path, sha256}, reference{path, sha256, kind}, samples, has_labels, source}
  passes[{stage, kind, name, format, changed, summary, details, failures}]
  artifacts[{name, path, format, precision, role, bytes, sha256,
             quantization{method, ..., recipe (INT8 candidates: what the file is built from, the search's pick
                          included; edgeq.recipe.Recipe.to_dict: version, scheme, activations, weights,
                          overrides[{node, kind}], excluded_op_types[{op_type, kind}]; a language model's also
                          groups[{group, dtype}], steps[{name}], matmul_nbits{accuracy_level} when set)},
             details{io{inputs[{name, dtype, shape, batch, layout, preprocessing}], outputs[...]} for .onnx/.pte, ...},
             validations[{runner, machine, cpu_model, features, emulated, metrics, budget_check,
                          latency_ms, latency_kind, runtime, latency_detail (optional)}]}]
  verdict{passed, failures[]}
Optional top-level keys (present only when the feature ran): search{met, best, stopped, options, trials[{index,
  label, ..., recipe}], closest[]}, search_pte{met, best, trials[{index, label, ..., recipe}], closest[]},
  sensitivity[{rank, node, op_type, tensor, added_db, ...}] (ONNX), sensitivity_pte[...] (PT2E graph),
  sweep{metric, pick, variants[]},
  explain{profiles[{artifact, format, source, runs, wall_ms, runtime_ms, total_ms, coverage, ops[]}], warnings[],
          notes[], layer_error[{artifact, format, samples, method, ranking ("alone" | "added"),
          layers[{index, layer, op, sqnr_db, cosine, added_db, alone_db, nodes[]}], worst[],
          moves[{layer, move, nodes[], base_db, after_db, gain_db, samples_better, samples}]}],
          trial_layer_error[{format, trial, label, passed, lowest{layer, op, sqnr_db},
          layers[{layer, op, sqnr_db, cosine, added_db}], worst[]}]} (edgeq.explain: each search trial rebuilt
          from its recipe),
  timing{phases[{phase, seconds, bought (optional)}], total_s} (edgeq.timing; wall seconds of this run only)
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from edgeq._version import __version__
from edgeq.artifact_io import annotate_io
from edgeq.errors import ManifestError
from edgeq.hashing import sha256_file
from edgeq.jsontypes import (
    JSONObject,
    JSONValue,
    as_object,
    get_bool,
    get_float_or_none,
    get_int,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
    get_str_or_none,
)

SCHEMA = "edgeq.manifest"
SCHEMA_VERSION = 1
MANIFEST_NAME = "edgeq.json"

ROLES = ("baseline", "candidate", "auxiliary")  # baseline: float artifacts; auxiliary: derived, not validated (.ort, .bpte)


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
    for name in ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "torchao", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def edgeq_version() -> str:
    return __version__


def new_manifest() -> JSONObject:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgeq_version": edgeq_version(),
        "dependencies": dependency_versions(),
        "source": None, "target": None, "config": None, "budget": None, "signature": None,
        "validation_data": None, "passes": [], "artifacts": [], "verdict": None,
    }


_REQUIRED = ("schema", "schema_version", "created", "edgeq_version", "dependencies", "source", "target",
             "config", "budget", "signature", "validation_data", "passes", "artifacts", "verdict")
_OPTIONAL: dict[str, type] = {"search": dict, "sensitivity": list, "sensitivity_pte": list, "sweep": dict,
                              "explain": dict, "files": list}  # files: every other file of the folder, hashed (edgeq.integrity)
_ARTIFACT_REQUIRED = ("name", "path", "format", "precision", "role", "bytes", "sha256", "quantization", "details",
                      "validations")
_VALIDATION_REQUIRED = ("runner", "machine", "cpu_model", "features", "emulated", "metrics", "budget_check",
                        "latency_ms", "latency_kind", "runtime")


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ManifestError(f"{where}: {what}", "the manifest is malformed or was edited; re-run edgeq export")


def _file_entry(e: object, where: str) -> None:
    if not isinstance(e, dict):
        raise ManifestError(f"{where}: must be an object")
    for k in ("path", "sha256"):
        _need(isinstance(e.get(k), str), where, f"{k!r} must be a string")


def validate_manifest(m: object, where: str = MANIFEST_NAME) -> None:
    """Structural and type check of a manifest dict; raises ManifestError naming the first problem."""
    if not isinstance(m, dict):
        raise ManifestError(f"{where}: top level must be an object")
    if m.get("schema") != SCHEMA:
        raise ManifestError(f"{where}: not an edgeq manifest (schema={m.get('schema')!r})")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{where}: schema_version {m.get('schema_version')} is not supported "
                            f"(this edgeq reads {SCHEMA_VERSION})", "re-run edgeq export with this edgeq")
    for k in _REQUIRED:
        if k not in m:
            raise ManifestError(f"{where}: missing key {k!r}")
    for k in ("config", "budget", "validation_data", "target", "source", "signature", "dependencies"):
        _need(isinstance(m[k], dict), where, f"{k!r} must be an object")
    for k in ("created", "edgeq_version"):
        _need(isinstance(m[k], str), where, f"{k!r} must be a string")
    _need(m["verdict"] is None or isinstance(m["verdict"], dict), where, "'verdict' must be an object or null")
    _need(isinstance(m["artifacts"], list), where, "'artifacts' must be a list")
    _need(isinstance(m["passes"], list) and all(isinstance(p, dict) for p in m["passes"]), where,
          "'passes' must be a list of objects")
    names = set()
    for i, a in enumerate(m["artifacts"]):
        _need(isinstance(a, dict), f"{where}: artifacts[{i}]", "must be an object")
        for k in _ARTIFACT_REQUIRED:
            if k not in a:
                raise ManifestError(f"{where}: artifacts[{i}] lacks {k!r}")
        for k in ("name", "path", "format", "precision", "role", "sha256"):
            _need(isinstance(a[k], str), f"{where}: artifacts[{i}]", f"{k!r} must be a string")
        _need(isinstance(a["bytes"], int) and not isinstance(a["bytes"], bool), f"{where}: artifacts[{i}]",
              "'bytes' must be an integer")
        _need(isinstance(a["details"], dict) and isinstance(a["validations"], list)
              and (a["quantization"] is None or isinstance(a["quantization"], dict)), f"{where}: artifacts[{i}]",
              "details/quantization must be objects, validations a list")
        if a["role"] not in ROLES:
            raise ManifestError(f"{where}: artifacts[{i}].role {a['role']!r} not in {ROLES}")
        if a["name"] in names:
            raise ManifestError(f"{where}: artifact name {a['name']!r} appears twice")
        names.add(a["name"])
        if Path(a["path"]).is_absolute() or ".." in Path(a["path"]).parts:
            raise ManifestError(f"{where}: artifacts[{i}].path must be relative to the manifest's folder")
        for j, v in enumerate(a["validations"]):
            _need(isinstance(v, dict), f"{where}: artifacts[{i}].validations[{j}]", "must be an object")
            for k in _VALIDATION_REQUIRED:
                if k not in v:
                    raise ManifestError(f"{where}: artifacts[{i}].validations[{j}] lacks {k!r}")
    for k, kind in _OPTIONAL.items():
        if k in m and m[k] is not None and not isinstance(m[k], kind):
            raise ManifestError(f"{where}: optional key {k!r} must be a {kind.__name__}")
    for k in ("inputs", "reference"):
        if k not in m["validation_data"]:
            raise ManifestError(f"{where}: validation_data lacks {k!r}")
        _file_entry(m["validation_data"][k], f"{where}: validation_data.{k}")
    for i, f in enumerate(m.get("files") or []):
        _file_entry(f, f"{where}: files[{i}]")


def write_manifest(m: JSONObject, outdir: Path) -> Path:
    annotate_io(m, outdir)  # what each shipped file accepts (apps read it; the batch may be fixed at 1)
    validate_manifest(m)
    p = outdir / MANIFEST_NAME
    p.write_text(json.dumps(m, indent=2, sort_keys=False) + "\n")
    return p


def read_manifest(outdir: Path) -> JSONObject:
    p = outdir / MANIFEST_NAME if outdir.is_dir() else outdir
    if not p.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {outdir}", "point at a folder written by `edgeq export`")
    try:
        m: object = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{p}: not valid JSON ({e})", "the manifest is corrupt; re-run edgeq export") from e
    validate_manifest(m, str(p))
    return as_object(m, str(p))
