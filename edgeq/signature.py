"""The model's I/O signature, as recorded in the manifest and checked against data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from edgeq.errors import ManifestError
from edgeq.jsontypes import JSONObject, as_list, get_str, get_str_or_none

Dim = int | str  # a concrete size, or a symbolic name such as "batch"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, int64, ...
    shape: tuple[Dim, ...]
    layout: str | None = None  # e.g. "NCHW" when known

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> TensorSpec:
        """A tensor spec read back from edgeq.json; a field of the wrong type raises ManifestError."""
        shape = as_list(d.get("shape"), "shape")
        if not all(isinstance(s, str | int) and not isinstance(s, bool) for s in shape):
            raise ManifestError(f"tensor spec shape {shape!r} must hold integers and dimension names")
        return TensorSpec(get_str(d, "name"), get_str(d, "dtype"), tuple(s for s in shape if isinstance(s, str | int)),
                          get_str_or_none(d, "layout"))
