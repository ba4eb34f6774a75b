"""The export's one call into edgeq.explain, after validation: per-operator profiles of every artifact, and the
per-layer error of the quantized models that ship — with, when the budget is missed, the measured effect of
widening each of the worst layers. Returns the manifest's ``explain`` key."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.backends.base import get_backend
from edgeq.backends.executorch import static_export
from edgeq.backends.onnx import PREP_NAME, OnnxBuildInputs
from edgeq.capture import Captured
from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.errors import ManifestError
from edgeq.executorch.neighbourhood import float_neighbourhood
from edgeq.explain.latency import profile_artifacts
from edgeq.explain.layers import LayerError, OutputError, worst
from edgeq.explain.onnx_layers import (
    MOVES,
    OnnxRebuild,
    alone_errors,
    float_activations,
    onnx_layer_errors,
    output_error,
)
from edgeq.explain.pte_alone import pte_alone_errors
from edgeq.explain.pte_layers import PTE_FLOAT_MOVE, pt2e_output_error, pte_layer_errors
from edgeq.explain.trials import LayerMeasure, built_trials, trial_layer_errors
from edgeq.jsontypes import JSONObject, get_object_or_none, get_strs
from edgeq.manifest import Artifact
from edgeq.onnx.export import preprocess
from edgeq.progress import Progress
from edgeq.recipe import Recipe
from edgeq.search.evaluate import SEARCH_DIR, calibration_cache
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ExplainInputs:
    outdir: Path
    scratch: Path
    artifacts: tuple[Artifact, ...]
    inputs_rel: str
    reference_rel: str
    captured: Captured  # the graph INT8 was built from (the outlier-prepared copy when there is one)
    calib: Dataset
    ev: Dataset
    target: Target
    samples: int = 8  # evaluation samples the per-layer comparison runs on
    moves: int = 3  # worst layers rebuilt wider when the budget is missed
    # the export's search records (manifest keys "search", "search_pte"): each trial is rebuilt from its recipe
    # for its own per-layer error
    searches: JSONObject = field(default_factory=dict)


def explain_export(x: ExplainInputs, progress: Progress | None = None) -> JSONObject:
    progress = progress or Progress(enabled=False)
    out = profile_artifacts(x.outdir, list(x.artifacts), x.inputs_rel, progress)
    layer_error: list[JSONObject] = []
    notes = get_strs(out, "notes")
    for a in x.artifacts:
        if a.role != "candidate" or a.precision != "int8-static" or a.format not in ("onnx", "pte"):
            continue
        progress.stage(f"explain: per-layer error of {a.name}")
        try:
            layer_error.append(_layer_error(x, a, progress))
        except Exception as e:  # a diagnostic: the artifact itself was validated already
            notes.append(f"{a.name}: no per-layer error ({type(e).__name__}: {str(e)[:200]})")
    try:
        trials = trial_layer_errors(x.searches, _trial_measures(x), progress, notes)
    except Exception as e:  # a diagnostic (the float graph or program to compare against could not be rebuilt)
        trials = []
        notes.append(f"no per-layer error for the search trials ({type(e).__name__}: {str(e)[:200]})")
    return {**out, "notes": notes, "layer_error": layer_error, "trial_layer_error": trials}


def _float_graph(x: ExplainInputs) -> Path:
    """The float graph the ONNX models were quantized from (pre-processed again if the scratch was not kept)."""
    float_model = x.scratch / PREP_NAME
    if float_model.is_file():
        return float_model
    again = x.scratch / "explain.prep.onnx"
    return again if again.is_file() else preprocess(x.outdir / "model.fp32.onnx", again)[0]


def _trial_measures(x: ExplainInputs) -> dict[str, LayerMeasure]:
    """How each format's search trials are rebuilt from their recipes and compared with float, layer by layer."""
    ev = x.ev.head(x.samples)
    measures: dict[str, LayerMeasure] = {}
    if built_trials(x.searches, "onnx"):
        float_model = _float_graph(x)
        acts = float_activations(float_model, ev)  # the same for every trial: collected once

        def onnx_trial(recipe: Recipe) -> list[LayerError]:
            path = x.scratch / "explain.trial.onnx"
            inputs = OnnxBuildInputs(calib=x.calib, prepped=float_model,
                                     calibration_cache=_calibration_cache(x, recipe.activations.calibration))
            get_backend("onnx").build(inputs, recipe, path)  # the export's own build path: the trial's bytes
            return onnx_layer_errors(float_model, path, ev, acts)
        measures["onnx"] = onnx_trial
    if built_trials(x.searches, "pte"):
        program = static_export(x.captured, x.calib)

        def pte_trial(recipe: Recipe) -> list[LayerError]:
            return pte_layer_errors(program, x.calib, ev, list(x.captured.signature), recipe.to_quant_options(),
                                    x.target)
        measures["pte"] = pte_trial
    return measures


def _calibration_cache(x: ExplainInputs, method: str | None) -> Path:
    """The ONNX search's calibrated ranges when it ran on the same pre-processed graph (same data and method: a
    rebuild of a trial does not calibrate again), else explain's own, shared by its rebuilds."""
    search = x.scratch / SEARCH_DIR
    same_graph = search.is_dir() and (x.scratch / PREP_NAME).is_file()
    return calibration_cache(search if same_graph else x.scratch, method)


def _options(a: Artifact) -> QuantOptions:
    """The recipe of the model that shipped, as the artifact records it (``quantization.recipe``: the first
    model's, or the search trial's that replaced it — never the closest trial of a search that met nothing, whose
    overrides, often 16-bit on the very layers explain widens, are not part of what shipped)."""
    recorded = get_object_or_none(a.quantization or {}, "recipe")
    if recorded is None:
        raise ManifestError(f"{a.name}: its quantization record has no recipe to rebuild it from")
    return Recipe.from_dict(recorded, f"{a.name}: quantization.recipe").to_quant_options()


def _missed(a: Artifact) -> bool:
    return any(not v.budget_check.get("passed", True) for v in a.validations)


def _layer_error(x: ExplainInputs, a: Artifact, progress: Progress) -> JSONObject:
    ev = x.ev.head(x.samples)
    opts = _options(a)
    missed = _missed(a)
    source: OnnxRebuild | torch.export.ExportedProgram
    if a.format == "onnx":
        float_model = _float_graph(x)
        layers = onnx_layer_errors(float_model, x.outdir / a.path, ev)
        method = "onnxruntime qdq_loss_debug: QDQ model vs the float graph it was quantized from"
        source = OnnxRebuild(float_model, x.calib, opts, _calibration_cache(x, opts.calibration))
        if missed and layers:  # worth a build per layer only when the budget is missed and the moves are measured
            layers = _alone(progress, layers, alone_errors(source, x.scratch, layers, ev, _reference(x)))
    else:
        source = static_export(x.captured, x.calib)
        layers = pte_layer_errors(source, x.calib, ev, list(x.captured.signature), opts, x.target)
        method = "torchao numeric debugger: PT2E-converted graph vs the float graph before lowering"
        if missed and layers:  # one convert per layer
            layers = _alone(progress, layers, pte_alone_errors(source, x.calib, ev, list(x.captured.signature),
                                                               opts, x.target, layers))
    rec: JSONObject = {"artifact": a.name, "format": a.format, "samples": len(ev), "method": method,
                       "ranking": "alone" if any(ly.alone_db is not None for ly in layers) else "added",
                       "layers": [ly.to_dict() for ly in layers],
                       "worst": [dict(rank=i + 1, **w.to_dict()) for i, w in enumerate(worst(layers))],
                       "moves": []}
    if missed and layers:
        progress.stage(f"explain: rebuilding {a.name} with each of its {x.moves} worst layers wider")
        rec["moves"] = _measure_moves(x, layers, opts, x.ev.head(4 * x.samples), source)
    return rec


def _alone(progress: Progress, layers: list[LayerError], measured: Iterator[LayerError]) -> list[LayerError]:
    """LAYERS with the output SQNR of the model with each one quantized alone, as MEASURED yields them."""
    progress.stage(f"explain: the output error of each of {len(layers)} layers quantized alone")
    out: list[LayerError] = []
    with progress.bar(len(layers), "layers alone", unit="layer") as bar:
        for layer in measured:
            out.append(layer)
            bar.update(1)
    return out


def _reference(x: ExplainInputs) -> dict[str, np.ndarray]:
    """The float model's outputs on the evaluation samples, as validation recorded them."""
    with np.load(x.outdir / x.reference_rel, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _measure_moves(x: ExplainInputs, layers: list[LayerError], opts: QuantOptions, ev: Dataset,
                   source: OnnxRebuild | torch.export.ExportedProgram) -> list[JSONObject]:
    """Output SQNR of the recipe rebuilt as is and with one worst layer wider; the difference is the move's gain."""
    sig = list(x.captured.signature)
    if isinstance(source, OnnxRebuild):  # the .onnx path (a .pte's source is its ExportedProgram)
        rebuild, ref = source, _reference(x)
        built = iter(range(1000))

        def widen(nodes: tuple[str, ...]) -> tuple[str, ...]:
            return nodes

        def measure(nodes: tuple[str, ...], move: str) -> OutputError:
            path = rebuild.wider(x.scratch / f"explain.{next(built)}.onnx", nodes, move)
            return output_error(path, ev, ref)
        moves: tuple[str, ...] = MOVES
    else:
        program = source

        def widen(nodes: tuple[str, ...]) -> tuple[str, ...]:
            return float_neighbourhood(program, nodes[0])

        def measure(nodes: tuple[str, ...], move: str) -> OutputError:
            return pt2e_output_error(program, x.calib, ev, sig, opts, x.target, nodes)
        moves = (PTE_FLOAT_MOVE,)  # XNNPACK's PT2E quantizer has no 16-bit activation scheme

    base = measure((), "")
    out: list[JSONObject] = []
    for w in worst(layers, x.moves):
        for move in moves:
            nodes = widen(w.nodes or (w.layer,))
            after = measure(nodes, move)
            gain = None if math.isinf(after.sqnr_db) or math.isinf(base.sqnr_db) else after.sqnr_db - base.sqnr_db
            out.append({"layer": w.layer, "op": w.op, "nodes": list(nodes), "move": move,
                        "base_db": _finite(base.sqnr_db), "after_db": _finite(after.sqnr_db), "gain_db": gain,
                        # paired: a gain that holds on most samples is the layer's, not one sample's noise
                        "samples_better": after.better_samples(base), "samples": len(ev)})
    return out


def _finite(v: float) -> float:
    return 999.0 if math.isinf(v) else v
