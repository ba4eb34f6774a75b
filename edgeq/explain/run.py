"""The export's one call into edgeq.explain, after validation: per-operator profiles of every artifact, and the
per-layer error of the quantized models that ship — with, when the budget is missed, the measured effect of
widening each of the worst layers. Returns the manifest's ``explain`` key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from edgeq.backends.executorch import static_export
from edgeq.backends.onnx import PREP_NAME
from edgeq.capture import Captured
from edgeq.config import CalibrationMethod, IntType, QuantMode, QuantOptions
from edgeq.data import Dataset
from edgeq.errors import ManifestError
from edgeq.executorch.neighbourhood import float_neighbourhood
from edgeq.explain.latency import profile_artifacts
from edgeq.explain.layers import LayerError, OutputError, worst
from edgeq.explain.onnx_layers import MOVES, onnx_layer_errors, output_error, rebuild_wider
from edgeq.explain.pte_layers import PTE_FLOAT_MOVE, pt2e_output_error, pte_layer_errors
from edgeq.jsontypes import JSONObject, get_int, get_object_or_none, get_objects, get_str_or_none, get_strs
from edgeq.manifest import Artifact
from edgeq.onnx.export import preprocess
from edgeq.progress import Progress
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
    quant: Mapping[str, JSONObject]  # resolved quantization options per format (manifest config.resolved_quant)
    target: Target
    search: JSONObject  # the export's search keys: the shipped model's layer overrides
    samples: int = 8  # evaluation samples the per-layer comparison runs on
    moves: int = 3  # worst layers rebuilt wider when the budget is missed


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
    return {**out, "notes": notes, "layer_error": layer_error}


def _options(x: ExplainInputs, a: Artifact) -> QuantOptions:
    """The recipe of the model that shipped: the resolved options, plus the per-layer overrides of the search
    trial that replaced the first model. A search that met nothing ships the first model, so its closest trial's
    overrides (often 16-bit on the very layers explain would widen) are not part of what shipped."""
    fmt = a.format
    opts = _resolved_options(x.quant.get(fmt) or {})
    trial = _shipped_trial(x, a)
    if trial is None:
        return opts
    opts = dataclasses.replace(opts, nodes_to_exclude=tuple(get_strs(trial, "nodes_excluded")),
                               int16_activation_nodes=tuple(get_strs(trial, "int16_activation_nodes")))
    config = get_object_or_none(trial, "config")
    if config is not None and fmt == "onnx":  # an ONNX trial records its calibration in its TrialConfig
        opts = dataclasses.replace(opts, calibration=_choice(config, "calibration", _CALIBRATIONS) or opts.calibration,
                                   per_channel=_flag(config, "per_channel"))
    if fmt == "pte":  # a .pte trial records its whole scheme (PteTrial.to_dict)
        opts = dataclasses.replace(opts, mode=_choice(trial, "mode", _MODES) or opts.mode,
                                   dynamic_linears=_flag(trial, "dynamic_linears") or False,
                                   fp16_float_linears=_flag(trial, "fp16_float_linears") or False)
    return opts


def _shipped_trial(x: ExplainInputs, a: Artifact) -> JSONObject | None:
    """The search trial whose model is A's file (the artifact's own record says which), or None: the first model."""
    shipped = get_object_or_none(a.quantization or {}, "search") or {}
    index = shipped.get("trial")
    if shipped.get("met") is not True or not isinstance(index, int):
        return None
    s = get_object_or_none(x.search, "search" if a.format == "onnx" else "search_pte") or {}
    return next((t for t in get_objects(s, "trials") if t.get("index") == index), None)


_T = TypeVar("_T", bound=str)
_MODES: dict[str, QuantMode] = {"static": "static", "dynamic": "dynamic"}
_CALIBRATIONS: dict[str, CalibrationMethod] = {
    "minmax": "minmax", "percentile": "percentile", "entropy": "entropy", "distribution": "distribution"}
_INT_TYPES: dict[str, IntType] = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16"}


def _choice(d: JSONObject, key: str, allowed: Mapping[str, _T]) -> _T | None:
    value = get_str_or_none(d, key)
    if value is not None and value not in allowed:
        raise ManifestError(f"the recorded quantization setting {key}={value!r} is not one of {', '.join(allowed)}")
    return None if value is None else allowed[value]


def _flag(d: JSONObject, key: str) -> bool | None:
    value = d.get(key)
    return value if isinstance(value, bool) else None


def _resolved_options(d: JSONObject) -> QuantOptions:
    """``QuantOptions.to_dict()``'s record (the manifest's ``config.resolved_quant``) read back; a missing key
    keeps the field's default."""
    defaults = QuantOptions()
    return QuantOptions(
        mode=_choice(d, "mode", _MODES) or defaults.mode, calibration=_choice(d, "calibration", _CALIBRATIONS),
        per_channel=_flag(d, "per_channel"), activation_type=_choice(d, "activation_type", _INT_TYPES),
        weight_type=_choice(d, "weight_type", _INT_TYPES), reduce_range=_flag(d, "reduce_range"),
        nodes_to_exclude=tuple(get_strs(d, "nodes_to_exclude")),
        op_types_to_exclude=tuple(get_strs(d, "op_types_to_exclude")),
        max_calibration_samples=get_int(d, "max_calibration_samples") if "max_calibration_samples" in d
        else defaults.max_calibration_samples,
        int16_activation_nodes=tuple(get_strs(d, "int16_activation_nodes")),
        dynamic_linears=bool(d.get("dynamic_linears", defaults.dynamic_linears)),
        per_token=bool(d.get("per_token", defaults.per_token)),
        fp16_float_linears=bool(d.get("fp16_float_linears", defaults.fp16_float_linears)))


def _missed(a: Artifact) -> bool:
    return any(not v.budget_check.get("passed", True) for v in a.validations)


def _layer_error(x: ExplainInputs, a: Artifact, progress: Progress) -> JSONObject:
    ev = x.ev.head(x.samples)
    opts = _options(x, a)
    if a.format == "onnx":
        float_model = x.scratch / PREP_NAME
        if not float_model.is_file():  # an export whose scratch was not kept: pre-process the float model again
            float_model = preprocess(x.outdir / "model.fp32.onnx", x.scratch / "explain.prep.onnx")[0]
        layers = onnx_layer_errors(float_model, x.outdir / a.path, ev)
        method = "onnxruntime qdq_loss_debug: QDQ model vs the float graph it was quantized from"
    else:
        program = static_export(x.captured, x.calib)
        layers = pte_layer_errors(program, x.calib, ev, list(x.captured.signature), opts, x.target)
        method = "torchao numeric debugger: PT2E-converted graph vs the float graph before lowering"
    rec: JSONObject = {"artifact": a.name, "format": a.format, "samples": len(ev), "method": method,
                           "layers": [ly.to_dict() for ly in layers],
                           "worst": [dict(rank=i + 1, **w.to_dict()) for i, w in enumerate(worst(layers))],
                           "moves": []}
    if _missed(a) and layers:
        progress.stage(f"explain: rebuilding {a.name} with each of its {x.moves} worst layers wider")
        rec["moves"] = _measure_moves(x, a, layers, opts, x.ev.head(4 * x.samples),
                                      program if a.format == "pte" else float_model)
    return rec


def _measure_moves(x: ExplainInputs, a: Artifact, layers: list[LayerError], opts: QuantOptions, ev: Dataset,
                   source: Path | torch.export.ExportedProgram) -> list[JSONObject]:
    """Output SQNR of the recipe rebuilt as is and with one worst layer wider; the difference is the move's gain."""
    sig = list(x.captured.signature)
    if isinstance(source, Path):  # the .onnx path: the pre-processed float model (a .pte's is its ExportedProgram)
        float_model = source
        with np.load(x.outdir / x.reference_rel, allow_pickle=False) as z:
            ref = {k: z[k] for k in z.files}
        cache = x.scratch / "explain.calibration.json"
        built = iter(range(1000))

        def widen(nodes: tuple[str, ...]) -> tuple[str, ...]:
            return nodes

        def measure(nodes: tuple[str, ...], move: str) -> OutputError:
            path = rebuild_wider(float_model, x.scratch / f"explain.{next(built)}.onnx", x.calib, opts, nodes, move, cache)
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
