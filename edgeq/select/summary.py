"""The one summary line of a selection: it names what shipped, never a trial that did not ship."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.jsontypes import JSONObject


@dataclass(frozen=True)
class Selection:
    """What a selection loop decided, in the words the terminal, the report and ``--json`` use."""

    format: str  # "onnx", "pte", "sweep", "llm-onnx", ...
    met: bool
    trials: int
    stopped: str
    shipped: str  # what ships, e.g. "trial 3 (minmax, per-channel, float top-4)" or "the first INT8 model (…)"
    time_capped: bool = False

    def line(self) -> str:
        head = f"search ({self.format}): "
        if self.met:
            return head + f"shipped {self.shipped}, which meets the budget ({self.trials} trials; {self.stopped})"
        cap = " — stopped by the safety time cap, so this result depends on machine speed" if self.time_capped else ""
        return head + (f"budget not met after {self.trials} trials ({self.stopped}){cap}; shipped {self.shipped}, "
                       "whose verdict fails")

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Selection:
        """The selection a manifest recorded (``search.selection`` / ``search_pte.selection``)."""
        return cls(str(d["format"]), bool(d["met"]), int(str(d["trials"])), str(d["stopped"]), str(d["shipped"]),
                   bool(d.get("time_capped", False)))

    def to_dict(self) -> JSONObject:
        return {"format": self.format, "met": self.met, "trials": self.trials, "stopped": self.stopped,
                "shipped": self.shipped, "time_capped": self.time_capped, "summary": self.line()}
