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
                          groups[{group, dtype}], steps[{name}], matmul_nbits{accuracy_level} when set; with
                          --compress also compression{version, methods[{method, <level fields>}]}, in order)},
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
  timing{phases[{phase, seconds, bought (optional)}], total_s} (edgeq.timing; wall seconds of this run only),
  fleet{boards[], ...} (edgeq.validate.fleet_run), outliers{...} (edgeq.prepare),
  compression{..., artifacts} (edgeq.compress), llm{float, seq_len, formats, tokenizer, ...} (text generation),
  files[{path, bytes, sha256}] (edgeq.integrity.seal: every other file of the folder). Any other key is refused.
In Python the manifest is :class:`Manifest` (``read_manifest`` returns it, ``write_manifest`` writes it): a frozen
dataclass with one field per top-level key, typed sections (edgeq.manifest_sections) where the keys are fixed, and
JSON objects for the records whose content is open by design; its ``to_json`` writes the same bytes it read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from edgeq.artifact_io import with_io
from edgeq.errors import ManifestError
from edgeq.jsontypes import (
    JSONObject,
    JSONValue,
    as_object,
    get_object,
    get_object_or_none,
    get_objects,
    get_strs,
    objects,
)

# The sections live beside this module (the 300-line limit); callers import every manifest type from here.
from edgeq.manifest_sections import ROLES as ROLES
from edgeq.manifest_sections import Artifact as Artifact
from edgeq.manifest_sections import FileEntry as FileEntry
from edgeq.manifest_sections import FileRef as FileRef
from edgeq.manifest_sections import Source as Source
from edgeq.manifest_sections import TargetInfo as TargetInfo
from edgeq.manifest_sections import Tool as Tool
from edgeq.manifest_sections import Validation as Validation
from edgeq.manifest_sections import ValidationData as ValidationData
from edgeq.manifest_sections import dependency_versions as dependency_versions
from edgeq.manifest_sections import edgeq_version as edgeq_version

SCHEMA = "edgeq.manifest"
SCHEMA_VERSION = 1
MANIFEST_NAME = "edgeq.json"
_T = TypeVar("_T")


_REQUIRED = ("schema", "schema_version", "created", "edgeq_version", "dependencies", "source", "target",
             "config", "budget", "signature", "validation_data", "passes", "artifacts", "verdict")
# In the order a tensor export writes them (fleet before the search records; files, written by the seal, last but
# for the sweep table, which ``edgeq sweep`` adds to a sealed export). files: every other file, hashed.
_OPTIONAL: dict[str, type] = {"fleet": dict, "search": dict, "sensitivity": list, "search_pte": dict,
                              "sensitivity_pte": list, "explain": dict, "outliers": dict, "compression": dict,
                              "timing": dict, "llm": dict, "files": list, "sweep": dict}
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
    for k in m:
        if k not in _REQUIRED and k not in _OPTIONAL:
            raise ManifestError(f"{where}: unknown key {k!r}", "the manifest was edited, or written by a newer edgeq")
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


@dataclass(frozen=True)
class Manifest:
    """``edgeq.json``, typed: one field per top-level key (``tool`` holds ``created``, ``edgeq_version`` and
    ``dependencies``; ``schema`` and ``schema_version`` are the constants). Optional sections are ``None`` when
    absent. Frozen: an update is a new Manifest (``dataclasses.replace``, :meth:`with_records`).

    JSON objects where the content is open by design: ``config`` (the recorded PipelineConfig of a tensor export,
    the LlmConfig of a text-generation one), ``budget`` (Budget.to_dict, or the perplexity limit), ``signature``
    (tensor specs, or the text-generation I/O), ``verdict`` (per-flow failures, fleet counts, notes), the pass
    records (each stage writes its own details), the artifacts (a tensor export writes ``Artifact.to_dict`` rows,
    a text-generation export its own rows, e.g. emulated speed rows naming their target; :meth:`artifact_list` reads
    them as :class:`Artifact`), and each feature's record (search trials, sensitivity rows, sweep, explain, outliers,
    compression, timing, fleet, llm)."""

    tool: Tool
    source: Source
    target: TargetInfo
    config: JSONObject
    budget: JSONObject
    signature: JSONObject
    validation_data: ValidationData
    passes: tuple[JSONObject, ...]
    artifacts: tuple[JSONObject, ...]
    verdict: JSONObject | None
    fleet: JSONObject | None = None
    search: JSONObject | None = None
    sensitivity: tuple[JSONObject, ...] | None = None
    search_pte: JSONObject | None = None
    sensitivity_pte: tuple[JSONObject, ...] | None = None
    explain: JSONObject | None = None
    outliers: JSONObject | None = None
    compression: JSONObject | None = None
    timing: JSONObject | None = None
    llm: JSONObject | None = None
    files: tuple[FileEntry, ...] | None = None
    sweep: JSONObject | None = None
    # The top-level keys in the order they were read or added. Keys not listed follow in the canonical order, so a
    # section set with ``replace`` lands where a dict assignment put it, and a manifest read back keeps its bytes.
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return self.verdict is not None and self.verdict.get("passed") is True

    @property
    def failures(self) -> list[str]:
        return get_strs(self.verdict or {}, "failures")

    def artifact_list(self) -> list[Artifact]:
        """The artifact records as :class:`Artifact` (a text-generation row's extra keys are not kept)."""
        return [Artifact.from_dict(a) for a in self.artifacts]

    def with_records(self, records: Mapping[str, JSONValue], where: str = MANIFEST_NAME) -> Manifest:
        """This manifest with the given top-level records set (a new key after the present ones, as a dict update
        does), validated like a file read back; e.g. the selection's ``search`` and ``sensitivity`` records."""
        return Manifest.from_json({**self.to_json(), **records}, where)

    def to_json(self) -> JSONObject:
        """The manifest as written to ``edgeq.json`` (key order included). Nested records are shared, not copied."""
        values: dict[str, JSONValue] = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.tool.created,
            "edgeq_version": self.tool.edgeq_version, "dependencies": self.tool.dependencies,
            "source": self.source.to_json(), "target": self.target.to_json(), "config": self.config,
            "budget": self.budget, "signature": self.signature, "validation_data": self.validation_data.to_json(),
            "passes": list(self.passes), "artifacts": list(self.artifacts), "verdict": self.verdict,
            "fleet": self.fleet, "search": self.search, "sensitivity": _rows(self.sensitivity),
            "search_pte": self.search_pte, "sensitivity_pte": _rows(self.sensitivity_pte), "explain": self.explain,
            "outliers": self.outliers, "compression": self.compression, "timing": self.timing, "llm": self.llm,
            "files": None if self.files is None else [f.to_json() for f in self.files], "sweep": self.sweep}
        order = [*self.key_order, *(k for k in values if k not in self.key_order
                                    and (k in _REQUIRED or values[k] is not None))]
        return {k: values[k] for k in order}

    @staticmethod
    def from_json(obj: object, where: str = MANIFEST_NAME) -> Manifest:
        """A manifest read back (``json.loads`` of edgeq.json); a missing, unknown or mistyped key, another schema
        or version raise ManifestError naming it."""
        validate_manifest(obj, where)
        m = as_object(obj, where)
        files = m.get("files")
        return Manifest(
            tool=_read(where, "tool", lambda: Tool.from_json(m)),
            source=_read(where, "source", lambda: Source.from_json(get_object(m, "source"))),
            target=_read(where, "target", lambda: TargetInfo.from_json(get_object(m, "target"))),
            config=get_object(m, "config"), budget=get_object(m, "budget"), signature=get_object(m, "signature"),
            validation_data=_read(where, "validation_data",
                                  lambda: ValidationData.from_json(get_object(m, "validation_data"))),
            passes=tuple(get_objects(m, "passes")), artifacts=tuple(get_objects(m, "artifacts")),
            verdict=get_object_or_none(m, "verdict"), fleet=get_object_or_none(m, "fleet"),
            search=get_object_or_none(m, "search"), sensitivity=_read(where, "sensitivity", lambda: _objs(m, "sensitivity")),
            search_pte=get_object_or_none(m, "search_pte"),
            sensitivity_pte=_read(where, "sensitivity_pte", lambda: _objs(m, "sensitivity_pte")),
            explain=get_object_or_none(m, "explain"), outliers=get_object_or_none(m, "outliers"),
            compression=get_object_or_none(m, "compression"), timing=get_object_or_none(m, "timing"),
            llm=get_object_or_none(m, "llm"), sweep=get_object_or_none(m, "sweep"),
            files=None if files is None else _read(where, "files", lambda: tuple(
                FileEntry.from_json(f) for f in objects(files, "files"))),
            key_order=tuple(m))


def _rows(rows: tuple[JSONObject, ...] | None) -> list[JSONObject] | None:
    return None if rows is None else list(rows)


def _objs(m: Mapping[str, object], key: str) -> tuple[JSONObject, ...] | None:
    return None if m.get(key) is None else tuple(objects(m[key], key))


def _read(where: str, key: str, read: Callable[[], _T]) -> _T:
    """``read()``, its ManifestError prefixed with the file and the section (``edgeq.json: target: 'abi' ...``)."""
    try:
        return read()
    except ManifestError as e:
        raise ManifestError(f"{where}: {key}: {e.cause}", e.hint) from e


def write_manifest(m: Manifest, outdir: Path) -> Manifest:
    """Write ``m`` to ``outdir/edgeq.json``; returns it as written (each runnable artifact's ``details.io`` filled
    in: what the file accepts, for apps; the batch may be fixed at 1)."""
    m = replace(m, artifacts=with_io(m.artifacts, m.signature, outdir))
    d = m.to_json()
    validate_manifest(d)
    (outdir / MANIFEST_NAME).write_text(json.dumps(d, indent=2, sort_keys=False) + "\n")
    return m


def read_manifest(outdir: Path) -> Manifest:
    p = outdir / MANIFEST_NAME if outdir.is_dir() else outdir
    if not p.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {outdir}", "point at a folder written by `edgeq export`")
    try:
        m: object = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{p}: not valid JSON ({e})", "the manifest is corrupt; re-run edgeq export") from e
    return Manifest.from_json(m, str(p))
