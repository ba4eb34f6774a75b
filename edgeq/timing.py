"""Where an export's time went: wall seconds per phase (capture and preparation, each format's build and search,
validation, explain), recorded in the manifest's ``timing`` section next to what the time bought.

Seconds are facts about one run on one machine, never inputs to a decision: the search's budget is counted in
trials, so the shipped bytes do not depend on them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from edgeq.jsontypes import JSONObject, get_number_or_none, get_object_or_none, get_objects

# The metric a search's gain is shown in: the first of these whose budget limit is set (an embedding's top-1
# "agreement" is the argmax of a vector, meaningless), else cosine.
_GAIN_METRICS = (("min_nn_agreement", "nn_agreement", "NN agreement", ".4f"),
                 ("min_top1_agreement", "top1_agreement", "top-1 agreement", ".4f"),
                 ("max_accuracy_drop", "top1_agreement", "top-1 agreement", ".4f"),
                 ("min_cosine", "cosine_mean", "cosine", ".5f"), ("min_sqnr", "sqnr_db", "SQNR dB", ".1f"))
_FALLBACK = ("cosine_mean", "cosine", ".5f")


@dataclass
class PhaseClock:
    """Wall seconds of named phases, in the order they ran (a phase may run once per format)."""

    phases: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases.append((name, time.perf_counter() - t0))

    def record(self, manifest: JSONObject) -> JSONObject:
        """The manifest's ``timing`` section: each phase with its seconds and, for preparation and searches, what
        it bought (read from the manifest's ``outliers`` and ``search`` / ``search_pte`` records)."""
        rows: list[JSONObject] = []
        for name, seconds in self.phases:
            row: JSONObject = {"phase": name, "seconds": round(seconds, 2)}
            bought = _bought(name, manifest)
            if bought:
                row["bought"] = bought
            rows.append(row)
        return {"phases": rows, "total_s": round(time.perf_counter() - self.started, 2)}


def _bought(phase: str, manifest: JSONObject) -> str | None:
    if phase == "capture + preparation":
        return _preparation(manifest)
    m = re.fullmatch(r"search (onnx|pte)", phase)
    if m:
        return search_gain(get_object_or_none(manifest, "search" if m[1] == "onnx" else "search_pte"),
                           get_object_or_none(manifest, "budget") or {})
    return None


def _preparation(manifest: JSONObject) -> str | None:
    outliers = get_object_or_none(manifest, "outliers")
    seconds = get_object_or_none(outliers, "seconds") if outliers else None
    prep = get_number_or_none(seconds, "prepare") if seconds else None
    if outliers is None or prep is None:
        return None
    rounding = get_object_or_none(outliers, "rounding") or {}
    chosen = rounding.get("picked") or rounding.get("mode")
    return f"outlier-aware preparation {prep:.1f} s" + (f" ({chosen} weight rounding)" if chosen else "")


def search_gain(search: JSONObject | None, budget: JSONObject) -> str | None:
    """"top-1 agreement 0.8375 -> 0.9350 (trial 7 of 14)" for a search that shipped a trial, in the budget's
    metric, else what it cost."""
    if search is None:
        return None
    trials = get_objects(search, "trials")
    if not trials:
        return None
    best = search.get("best")  # the ONNX record names its best-scoring trial even when none met the budget
    shipped = next((t for t in trials if t.get("index") == best), None) if search.get("met") is True else None
    if shipped is None:
        return f"{len(trials)} trial(s), none met the budget: the first INT8 model ships"
    first, last = get_object_or_none(trials[0], "metrics"), get_object_or_none(shipped, "metrics")
    key, label, fmt = next(((k, lb, f) for limit, k, lb, f in _GAIN_METRICS if budget.get(limit) is not None),
                           _FALLBACK)
    a, b = (get_number_or_none(first, key) if first else None), (get_number_or_none(last, key) if last else None)
    if a is None or b is None:
        return f"trial {best} of {len(trials)} shipped"
    return f"{label} {a:{fmt}} -> {b:{fmt}} (trial {best} of {len(trials)})"


def timing_rows(manifest: JSONObject) -> list[tuple[str, str, str, str]]:
    """(phase, seconds, share of the export, what it bought) for the reports; empty for a manifest without timing."""
    timing = get_object_or_none(manifest, "timing")
    total = get_number_or_none(timing, "total_s") if timing else None
    if timing is None or not total:
        return []
    rows = []
    for p in get_objects(timing, "phases"):
        s = get_number_or_none(p, "seconds") or 0.0
        rows.append((str(p.get("phase", "")), f"{s:.1f}", f"{100 * s / total:.0f} %", str(p.get("bought") or "")))
    return rows


def timing_line(manifest: JSONObject) -> str | None:
    """One terminal line: the total and the phases that took at least 5 % of it."""
    timing = get_object_or_none(manifest, "timing")
    total = get_number_or_none(timing, "total_s") if timing else None
    if not total:
        return None
    big = [f"{phase} {s} s" for phase, s, share, _ in timing_rows(manifest) if float(share.rstrip(" %")) >= 5]
    return f"time: {total:.1f} s" + (f" ({', '.join(big)})" if big else "")
