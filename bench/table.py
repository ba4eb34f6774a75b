"""A tiny table type for benchmark sections, rendered as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"row has {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    def markdown(self) -> str:
        def cell(v: Any) -> str:
            if v is None:
                return "–"
            if isinstance(v, float):
                return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
            return str(v)

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        lines += [f"\n{n}" for n in self.notes]
        return "\n".join(lines)
