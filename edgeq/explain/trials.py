"""Per-layer error of every search trial, not only of the model that ships: each trial is rebuilt from the recipe
its search record holds (``search.trials[].recipe``, ``search_pte.trials[].recipe``) and compared with the float
graph layer by layer on the same few evaluation samples as the shipped model.

A user reading a failed search sees which layers each move actually improved: keeping layers float or 16-bit
should raise the SQNR from those layers on, and a move that leaves the worst layers as they were did not touch the
error that matters. Layers are ranked by the noise each adds beyond its inputs (``added_db``), as the shipped
model's are when its budget is met; the "quantized alone" ranking costs one build per layer and is kept for the
model that ships.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgeq.explain.layers import LayerError, worst
from edgeq.jsontypes import (
    JSONObject,
    JSONValue,
    get_bool,
    get_int,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
)
from edgeq.progress import Progress
from edgeq.recipe import Recipe

# the manifest key of each format's search record
SEARCH_KEYS = {"onnx": "search", "pte": "search_pte"}

LayerMeasure = Callable[[Recipe], list[LayerError]]  # a recipe -> its model's per-layer error against float


@dataclass(frozen=True)
class TrialLayers:
    """One trial's per-layer error, as the manifest records it (``explain.trial_layer_error[]``)."""

    format: str
    trial: int
    label: str
    passed: bool
    layers: tuple[LayerError, ...]

    def to_dict(self) -> JSONObject:
        return {"format": self.format, "trial": self.trial, "label": self.label, "passed": self.passed,
                "lowest": _lowest(self.layers),
                "layers": [_row(x) for x in self.layers],
                "worst": [dict(rank=i + 1, **_row(w)) for i, w in enumerate(worst(list(self.layers)))]}


def _db(v: float) -> float:
    return 999.0 if math.isinf(v) else round(v, 2)  # JSON has no infinity; 999 dB reads as exact


def _row(x: LayerError) -> JSONObject:
    return {"layer": x.layer, "op": x.op, "sqnr_db": _db(x.sqnr_db),
            "cosine": None if x.cosine is None else round(x.cosine, 6), "added_db": _db(x.added_db)}


def _lowest(layers: tuple[LayerError, ...]) -> JSONValue:
    """The layer whose output is furthest from float (the error accumulated up to it), or None."""
    if not layers:
        return None
    low = min(layers, key=lambda x: (x.sqnr_db, x.index))
    return {"layer": low.layer, "op": low.op, "sqnr_db": _db(low.sqnr_db)}


def built_trials(searches: JSONObject, fmt: str) -> list[JSONObject]:
    """The trials of FMT's search that built a model (not the errored or skipped ones) and record their recipe."""
    rec = get_object_or_none(searches, SEARCH_KEYS[fmt])
    if rec is None:
        return []
    return [t for t in get_objects(rec, "trials")
            if t.get("error") is None and t.get("metrics") and isinstance(t.get("recipe"), dict)]


def trial_layer_errors(searches: JSONObject, measures: Mapping[str, LayerMeasure], progress: Progress,
                       notes: list[str]) -> list[JSONObject]:
    """Each built trial of each format in MEASURES, rebuilt from its recipe and measured; a trial that cannot be
    rebuilt gets a note, not an error (a diagnostic: the trials were measured already)."""
    out: list[JSONObject] = []
    for fmt, measure in measures.items():
        trials = built_trials(searches, fmt)
        if not trials:
            continue
        progress.stage(f"explain: per-layer error of each of the {len(trials)} {fmt} search trials")
        with progress.bar(len(trials), f"{fmt} trials per layer", unit="trial") as bar:
            for t in trials:
                try:
                    out.append(_measure(fmt, t, measure).to_dict())
                except Exception as e:  # one trial that cannot be rebuilt must not lose the others
                    notes.append(f"{fmt} search trial {t.get('index')}: no per-layer error "
                                 f"({type(e).__name__}: {str(e)[:200]})")
                bar.update(1)
    return out


def _measure(fmt: str, trial: JSONObject, measure: LayerMeasure) -> TrialLayers:
    index = get_int(trial, "index")
    recipe = Recipe.from_dict(get_object(trial, "recipe"), f"{fmt} search trial {index}: recipe")
    return TrialLayers(fmt, index, get_str(trial, "label"), get_bool(trial, "passed"), tuple(measure(recipe)))
