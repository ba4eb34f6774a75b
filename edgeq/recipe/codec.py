"""Reading a recipe's parts back from JSON (a manifest's ``quantization.recipe``, a config file): every key is
checked, an unknown one or a value of the wrong type raises the caller's typed error naming the key and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TypeVar

from edgeq.compress.spec import COMPRESS_VERSION, MethodConfig, method_dict, method_from_dict
from edgeq.errors import EdgeqError
from edgeq.jsontypes import JSONObject, as_list, as_object
from edgeq.recipe.parts import (
    CALIBRATION_METHODS,
    FLOAT_KINDS,
    GRANULARITIES,
    GROUP_TYPES,
    INT_TYPES,
    LAYER_GROUPS,
    OVERRIDE_KINDS,
    STEP_NAMES,
    WEIGHT_TYPES,
    Activations,
    GroupOverride,
    LayerOverride,
    MatMulNBits,
    OpTypeOverride,
    Step,
    Weights,
    block_index,
)

_T = TypeVar("_T", bound=str)


def check_keys(d: Mapping[str, object], allowed: tuple[str, ...], where: str, error: type[EdgeqError]) -> None:
    """Refuse a key ``allowed`` does not list: a typo, or a field a newer edgeq added."""
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}" + (f" (and {', '.join(unknown[1:])})" if unknown[1:] else ""),
                    f"{where} keys are {', '.join(allowed)}: remove {unknown[0]!r}, or read it with the edgeq that "
                    "wrote it")


def literal(d: Mapping[str, object], key: str, allowed: tuple[_T, ...], default: _T, where: str,
            error: type[EdgeqError]) -> _T:
    value = d.get(key, default)
    for a in allowed:
        if value == a:
            return a
    raise error(f"{where}: {key}={value!r} is not one of {', '.join(allowed)}", f"set {key} to one of them")


def required_literal(d: Mapping[str, object], key: str, allowed: tuple[_T, ...], where: str,
                     error: type[EdgeqError]) -> _T:
    if key not in d:
        raise error(f"{where}: {key} is missing", f"set {key} to one of {', '.join(allowed)}")
    return literal(d, key, allowed, allowed[0], where, error)


def optional_literal(d: Mapping[str, object], key: str, allowed: tuple[_T, ...], where: str,
                     error: type[EdgeqError]) -> _T | None:
    if d.get(key) is None:
        return None
    return literal(d, key, allowed, allowed[0], where, error)


def optional_bool(d: Mapping[str, object], key: str, where: str, error: type[EdgeqError],
                  default: bool | None = None) -> bool | None:
    value = d.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise error(f"{where}: {key} must be true, false or null, got {value!r}", f"set {key} to a boolean")
    return value


def integer(d: Mapping[str, object], key: str, default: int, minimum: int, where: str,
            error: type[EdgeqError]) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{where}: {key} must be an integer >= {minimum}, got {value!r}", f"set {key} to one")
    return value


def activations_from(value: object, where: str, error: type[EdgeqError]) -> Activations:
    d = as_object(value, where, error)
    check_keys(d, ("dtype", "granularity", "calibration", "max_calibration_samples"), where, error)
    return Activations(dtype=optional_literal(d, "dtype", INT_TYPES, where, error),
                       granularity=literal(d, "granularity", GRANULARITIES, "per-tensor", where, error),
                       calibration=optional_literal(d, "calibration", CALIBRATION_METHODS, where, error),
                       max_calibration_samples=integer(d, "max_calibration_samples", 256, 1, where, error))


def weights_from(value: object, where: str, error: type[EdgeqError]) -> Weights:
    d = as_object(value, where, error)
    check_keys(d, ("dtype", "per_channel", "group_size", "symmetric", "reduce_range"), where, error)
    return Weights(dtype=optional_literal(d, "dtype", WEIGHT_TYPES, where, error),
                   per_channel=optional_bool(d, "per_channel", where, error),
                   group_size=integer(d, "group_size", 0, 0, where, error),
                   symmetric=bool(optional_bool(d, "symmetric", where, error, default=True)),
                   reduce_range=optional_bool(d, "reduce_range", where, error))


def _name(d: Mapping[str, object], key: str, where: str, error: type[EdgeqError]) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise error(f"{where}: {key} must be a non-empty string, got {value!r}", f"name the layer in {key}")
    return value


def overrides_from(value: object, where: str, error: type[EdgeqError]) -> tuple[LayerOverride, ...]:
    return tuple(LayerOverride(name, kind) for name, kind in _rows(value, "node", OVERRIDE_KINDS, where, error))


def op_types_from(value: object, where: str, error: type[EdgeqError]) -> tuple[OpTypeOverride, ...]:
    return tuple(OpTypeOverride(name, kind) for name, kind in _rows(value, "op_type", FLOAT_KINDS, where, error))


def _rows(value: object, name_key: str, kinds: tuple[_T, ...], where: str,
          error: type[EdgeqError]) -> list[tuple[str, _T]]:
    """(name, kind) of each ``{NAME_KEY: ..., "kind": ...}`` row of a list of overrides, every row checked."""
    out = []
    for i, row in enumerate(as_list(value, where, error)):
        d = as_object(row, f"{where}[{i}]", error)
        check_keys(d, (name_key, "kind"), f"{where}[{i}]", error)
        out.append((_name(d, name_key, f"{where}[{i}]", error), literal(d, "kind", kinds, kinds[0], f"{where}[{i}]", error)))
    return out


def _group(d: Mapping[str, object], where: str, error: type[EdgeqError]) -> str:
    """A layer group's name: one of LAYER_GROUPS, or block<i> (a numbered decoder block)."""
    if isinstance(name := d.get("group"), str) and block_index(name) is not None:
        return name
    return required_literal(d, "group", (*LAYER_GROUPS, "block<i>"), where, error)


def groups_from(value: object, where: str, error: type[EdgeqError]) -> tuple[GroupOverride, ...]:
    out = []
    for i, row in enumerate(as_list(value, where, error)):
        d = as_object(row, f"{where}[{i}]", error)
        check_keys(d, ("group", "dtype"), f"{where}[{i}]", error)
        out.append(GroupOverride(_group(d, f"{where}[{i}]", error),
                                 required_literal(d, "dtype", GROUP_TYPES, f"{where}[{i}]", error)))
    return tuple(out)


def steps_from(value: object, where: str, error: type[EdgeqError]) -> tuple[Step, ...]:
    out = []
    for i, row in enumerate(as_list(value, where, error)):
        d = as_object(row, f"{where}[{i}]", error)
        check_keys(d, ("name",), f"{where}[{i}]", error)
        out.append(Step(required_literal(d, "name", STEP_NAMES, f"{where}[{i}]", error)))
    return tuple(out)


def matmul_nbits_from(value: object, where: str, error: type[EdgeqError]) -> MatMulNBits | None:
    if value is None:
        return None
    d = as_object(value, where, error)
    check_keys(d, ("accuracy_level",), where, error)
    return MatMulNBits(integer(d, "accuracy_level", 4, 0, where, error))


def compression_dict(methods: tuple[MethodConfig, ...]) -> JSONObject:
    """The compression steps in order, as ``--compress``'s manifest section records them (edgeq.compress.spec)."""
    return {"version": COMPRESS_VERSION, "methods": [method_dict(m) for m in methods]}


def compression_from(value: object, where: str, error: type[EdgeqError]) -> tuple[MethodConfig, ...]:
    """The steps :func:`compression_dict` wrote; a newer compression version, an unknown method or key raises
    ``error`` naming it."""
    if value is None:
        return ()
    d = as_object(value, where, error)
    check_keys(d, ("version", "methods"), where, error)
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(f"{where}: version must be an integer, got {version!r}", f"set version to {COMPRESS_VERSION}")
    if version > COMPRESS_VERSION:
        raise error(f"{where}: compression version {version} is newer than this edgeq reads ({COMPRESS_VERSION})",
                    "upgrade edgeq (pip install -U edgeq) to build from it")
    if version != COMPRESS_VERSION:
        raise error(f"{where}: compression version {version} is not supported (this edgeq reads "
                    f"{COMPRESS_VERSION})", f"set version to {COMPRESS_VERSION}")
    return tuple(method_from_dict(as_object(row, f"{where}.methods[{i}]", error), f"{where}.methods[{i}]", error)
                 for i, row in enumerate(as_list(d.get("methods", []), f"{where}.methods", error)))


def part_dict(part: Activations | Weights | LayerOverride | OpTypeOverride | GroupOverride | Step
              | MatMulNBits) -> JSONObject:
    d: JSONObject = asdict(part)
    return d
