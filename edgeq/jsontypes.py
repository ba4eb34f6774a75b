"""Types for JSON-shaped data (edgeq.json sections, report rows, records), and readers that narrow them.

Data read back from disk is only as trustworthy as the file: the readers here check each field's type and raise the
caller's typed error naming the key, so a tampered or truncated record fails with a clear message instead of an
``AttributeError`` deep inside the code that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from edgeq.errors import EdgeqError, ManifestError

JSONScalar: TypeAlias = str | int | float | bool | None
# Nested values are the read-only (covariant) Sequence / Mapping, so a list[str] or a list of JSONObject rows fits
# where a JSON value is expected; code that changes a nested value narrows it to list / dict first (as_object).
JSONValue: TypeAlias = JSONScalar | Sequence["JSONValue"] | Mapping[str, "JSONValue"]
JSONObject: TypeAlias = dict[str, JSONValue]
JSONArray: TypeAlias = Sequence[JSONValue]


def _fail(error: type[EdgeqError], key: str, want: str, got: object) -> EdgeqError:
    return error(f"{key!r} must be {want}, got {type(got).__name__}",
                 "the record is malformed or was edited; re-create it")


def as_object(value: object, key: str = "value", error: type[EdgeqError] = ManifestError) -> JSONObject:
    """``value`` as a JSON object (a dict with string keys), or ``error``."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(error, key, "an object", value)
    return value


def as_list(value: object, key: str = "value", error: type[EdgeqError] = ManifestError) -> JSONArray:
    """``value`` as a JSON array (a list; a tuple too, as records built in memory may hold), or ``error``."""
    if not isinstance(value, list | tuple):
        raise _fail(error, key, "a list", value)
    return value


def objects(value: object, key: str = "value", error: type[EdgeqError] = ManifestError) -> list[JSONObject]:
    """``value`` as a list of JSON objects, or ``error`` naming the first item that is not one."""
    return [as_object(v, f"{key}[{i}]", error) for i, v in enumerate(as_list(value, key, error))]


def get_object(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> JSONObject:
    return as_object(obj.get(key), key, error)


def get_object_or_none(obj: Mapping[str, object], key: str,
                       error: type[EdgeqError] = ManifestError) -> JSONObject | None:
    value = obj.get(key)
    return None if value is None else as_object(value, key, error)


def get_objects(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> list[JSONObject]:
    """``obj[key]`` as a list of objects; a missing or null key is the empty list."""
    value = obj.get(key)
    return [] if value is None else objects(value, key, error)


def get_str(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _fail(error, key, "a string", value)
    return value


def get_str_or_none(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(error, key, "a string or null", value)
    return value


def get_strs(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> list[str]:
    """``obj[key]`` as a list of strings; a missing or null key is the empty list."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(error, key, "a list of strings", value)
    return [str(v) for v in value]


def get_int(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(error, key, "an integer", value)
    return value


def get_float(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> float:
    """A JSON number (int or float; a bool is not a number here)."""
    value = obj.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(error, key, "a number", value)
    return value  # an int stays an int: records written back keep their bytes


def get_float_or_none(obj: Mapping[str, object], key: str,
                      error: type[EdgeqError] = ManifestError) -> float | None:
    return None if obj.get(key) is None else get_float(obj, key, error)


def get_bool(obj: Mapping[str, object], key: str, error: type[EdgeqError] = ManifestError) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise _fail(error, key, "true or false", value)
    return value


def number_or_none(value: object) -> float | None:
    """A JSON number as float; anything else (null, a string, a bool) is None — for optional metrics."""
    v = recorded_number(value)
    return None if v is None else float(v)


def recorded_number(value: object) -> float | None:
    """A JSON number as recorded (an int stays an int, so rendering it is unchanged); anything else is None."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def get_number_or_none(obj: Mapping[str, object], key: str) -> float | None:
    """``obj[key]`` as :func:`recorded_number` reads it: for optional metrics that a report prints as recorded."""
    return recorded_number(obj.get(key))
