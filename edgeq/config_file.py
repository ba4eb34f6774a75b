"""A run's configuration on disk: ``edgeq.toml``, and the manifest's recorded configuration that rebuilds the same
artifacts (:func:`load_config`, also ``edgeq.load_config``; :func:`config_to_dict` writes the record)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

from edgeq.compress.spec import CompressOptions, TrainOptions, parse_spec
from edgeq.config import Budget, FleetOptions, PipelineConfig, QuantOptions, SearchOptions
from edgeq.errors import UsageError
from edgeq.imagefolder import Preprocess
from edgeq.jsontypes import JSONObject
from edgeq.manifest import MANIFEST_NAME

# Not recorded: where the run writes, the runner deadline (no effect on the bytes), trust_pickle (a manifest must
# never switch on unpickling for a rebuild), and how boards were driven (fleet: the manifest's "fleet" section
# records that run's boards and options).
_NOT_RECORDED = ("output", "force", "target_sha256", "trust_pickle", "runner_timeout_s", "fleet", "explain")

T = TypeVar("T")


def config_to_dict(config: PipelineConfig) -> JSONObject:
    """Every option of a run that affects the artifacts' bytes (all but output/force), JSON-ready.

    Paths that exist are made absolute so the record rebuilds from any working directory.
    """
    d: JSONObject = {}
    for f in fields(PipelineConfig):
        if f.name in _NOT_RECORDED:
            continue
        v = getattr(config, f.name)
        if isinstance(v, QuantOptions | SearchOptions | Budget | CompressOptions):
            v = v.to_dict()
        elif isinstance(v, Preprocess):
            v = asdict(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif f.name in ("model", "calib", "eval", "target") and isinstance(v, str) and Path(v).exists():
            v = str(Path(v).resolve())
        d[f.name] = v
    return d


def _construct(make: Callable[..., T], kwargs: Mapping[str, object], where: str, hint: str = "") -> T:
    """``make(**kwargs)`` with keyword values read from a file. Each option record checks its own values; a name
    it lacks (or a required one missing) is a TypeError, which becomes a UsageError naming the file."""
    try:
        return make(**kwargs)
    except TypeError as e:
        raise UsageError(f"{where}: {e}", hint) from e


def _table(value: object, key: str, where: str, lists_as_tuples: bool = True) -> dict[str, object]:
    """The ``[key]`` table of a config file (the manifest's object), its lists as the tuples the records hold."""
    if not isinstance(value, dict):
        raise UsageError(f"{where}: {key} must be a table", f"e.g. [{key}] in edgeq.toml")
    return {str(k): tuple(v) if lists_as_tuples and isinstance(v, list) else v for k, v in value.items()}


def config_from_dict(raw: Mapping[str, object], where: str, **overrides: object) -> PipelineConfig:
    """The inverse of :func:`config_to_dict` (also reads edgeq.toml's tables); ``overrides`` win."""
    raw = dict(raw)
    known = {f.name for f in fields(PipelineConfig)}
    unknown = set(raw) - known
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                         f"valid keys: {', '.join(sorted(known))}")
    quant = _table(raw.pop("quant", {}), "quant", where)
    budget = _table(raw.pop("budget", {}), "budget", where, lists_as_tuples=False)
    search = _table(raw.pop("search", {}), "search", where)
    compress = _compress_from(raw.pop("compress", {}), where)
    preprocess = raw.pop("preprocess", None)
    fleet = raw.pop("fleet", {})
    if isinstance(preprocess, dict):
        preprocess = _construct(Preprocess, _table(preprocess, "preprocess", where), where)
    q = _construct(QuantOptions, quant, where)
    b = _construct(Budget, budget, where)
    srch = _construct(SearchOptions, search, where)
    if isinstance(fleet, dict):
        fleet = _construct(FleetOptions, _table(fleet, "fleet", where, lists_as_tuples=False), where)
    for key in ("formats", "validate_on"):
        value = raw.get(key)
        if isinstance(value, list | tuple):
            raw[key] = tuple(value)
    raw.update(overrides)
    raw.setdefault("search", srch)
    raw.setdefault("fleet", fleet)
    raw.setdefault("compress", compress)
    raw.setdefault("preprocess", preprocess)
    raw.setdefault("quant", q)
    raw.setdefault("budget", b)
    return _construct(PipelineConfig, raw, where, "model, calib and output are required")


def load_config(path: str | Path, **overrides: object) -> PipelineConfig:
    """Read a run's configuration: an ``edgeq.toml`` (top-level keys of :class:`PipelineConfig`, ``[quant]``,
    ``[budget]`` and ``[search]`` tables), or a manifest ``edgeq.json`` (or its folder) written by
    ``edgeq export``, whose recorded configuration rebuilds the same artifacts. ``overrides`` (e.g.
    ``output=...``) win over the file."""
    p = Path(path)
    if p.is_dir() and (p / MANIFEST_NAME).is_file():
        p = p / MANIFEST_NAME
    if p.suffix == ".json":
        return _from_manifest(p, overrides)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise UsageError(f"config file not found: {p}") from e
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{p} is not valid TOML: {e}") from e
    return config_from_dict(raw, str(p), **overrides)


def _from_manifest(p: Path, overrides: dict[str, object]) -> PipelineConfig:
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise UsageError(f"manifest not found: {p}") from e
    except json.JSONDecodeError as e:
        raise UsageError(f"{p} is not valid JSON: {e}") from e
    rec = m.get("config", {}).get("recorded") if isinstance(m, dict) and isinstance(m.get("config"), dict) else None
    if not isinstance(rec, dict):
        raise UsageError(f"{p} records no rebuildable configuration (config.recorded)",
                         "it was written by an older edgeq; re-run edgeq export to get one")
    if "trust_pickle" in rec:
        raise UsageError(f"{p}: config.recorded sets trust_pickle, which a manifest may never do",
                         "pass --trust-pickle yourself to export a pickle-backed .pt2")
    target = m.get("target") if isinstance(m.get("target"), dict) else {}
    overrides.setdefault("target_sha256", target.get("sha256"))
    return config_from_dict(rec, f"{p} config.recorded", **overrides)


def _compress_from(raw: object, where: str) -> CompressOptions:
    """``[compress]`` in edgeq.toml (``methods = "prune:0.3,qat"`` plus :class:`TrainOptions` keys), or the
    manifest's recorded ``{"spec": ..., "train": {...}}``."""
    if isinstance(raw, CompressOptions):
        return raw
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: compress must be a table", 'e.g. [compress] methods = "prune:0.3"')
    table = dict(raw)
    spec = table.pop("methods", None)
    if "spec" in table:  # the manifest's form (CompressOptions.to_dict)
        spec = table.pop("spec")
        table.pop("version", None)
        table.pop("methods", None)
        table = dict(table.pop("train", {}))
    known = {f.name for f in fields(TrainOptions)}
    unknown = set(table) - known
    if unknown:
        raise UsageError(f"{where}: unknown compress key(s) {', '.join(sorted(unknown))}",
                         f"valid: methods, {', '.join(sorted(known))}")
    return CompressOptions(parse_spec(str(spec or "")), TrainOptions(**table))
