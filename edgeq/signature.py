"""The model's I/O signature, as recorded in the manifest and checked against data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeq.jsontypes import JSONObject

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
    def from_dict(d: dict[str, Any]) -> TensorSpec:
        return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]), d.get("layout"))
