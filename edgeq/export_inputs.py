"""The model and data an export builds from: loaded, compressed, prepared and captured, and the validation data
(evaluation inputs and float reference outputs) written into the output folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.capture import Captured, capture
from edgeq.compress.hook import compress_source
from edgeq.config import PipelineConfig, QuantOptions
from edgeq.data import Dataset, check_against_signature, load_dataset
from edgeq.jsontypes import JSONObject, get_object_or_none, get_objects, get_str, number_or_none
from edgeq.npz import save_npz
from edgeq.outdir import INPUTS_REL, REFERENCE_REL, VALIDATION_DIR
from edgeq.prepare import prepare_source, should_prepare
from edgeq.progress import Progress
from edgeq.reference import output_names_for, reference_outputs
from edgeq.source import ModelSource, load_source
from edgeq.targetspec import Target


@dataclass(frozen=True)
class ExportModel:
    """The model as captured, with its data: what every format is built from."""

    source: ModelSource  # compressed, when --compress
    float_source: ModelSource  # the user's model: the reference
    compression: JSONObject
    outliers: JSONObject  # what the outlier-aware preparation applied
    captured: Captured
    quant_captured: Captured  # what INT8 is built from (the prepared copy, if any)
    prepared: bool
    calib: Dataset
    ev: Dataset
    output_names: tuple[str, ...]


def _load_data(config: PipelineConfig, input_names: list[str]) -> tuple[Dataset, Dataset | None]:
    calib = load_dataset(config.calib, config.preprocess, input_names)
    ev = load_dataset(config.eval, config.preprocess, input_names) if config.eval else None
    return calib, ev


def load_model(config: PipelineConfig, target: Target, progress: Progress) -> ExportModel:
    """Load, compress and prepare the model, split its data, and capture it."""
    progress.stage(f"loading model {config.model}")
    source = load_source(config.model, config.trust_pickle)
    calib_all, ev = _load_data(config, source.input_names)
    if ev is None:
        calib_all, ev = calib_all.split(config.eval_fraction, config.seed)
    float_source, compression = source, JSONObject()
    if config.compress.enabled:
        source, compression = compress_source(source, config.compress, calib_all, ev, target, progress,
                                              per_channel=config.quant.per_channel)
    outliers: JSONObject = {}
    prepared_source = None

    # not on a QAT model: it ships its trained ranges, which a re-scaled copy would no longer match
    if should_prepare(config, source) and source.qat is None:
        prepared_source, outliers = prepare_source(source, calib_all, progress, explicit=config.outliers == "on",
                                                      rounding=config.rounding)
    progress.stage(f"capturing with torch.export ({len(calib_all)} calibration / {len(ev)} evaluation samples)")
    captured, calib = capture(source, calib_all)
    # INT8 is built from the prepared copy in every format; float artifacts and the reference stay the model's own.
    quant_captured = capture(prepared_source, calib_all)[0] if prepared_source is not None else captured
    ev = check_against_signature(ev, captured.signature).head(config.max_eval_samples)
    return ExportModel(source, float_source, compression, outliers, captured, quant_captured, prepared_source is not None,
                  calib, ev, tuple(output_names_for(captured)))


def write_validation_data(tmp: Path, model: ExportModel, progress: Progress) -> tuple[dict[str, np.ndarray], str]:
    """The evaluation inputs and the float reference outputs, into the folder's validation data."""
    (tmp / VALIDATION_DIR).mkdir()
    model.ev.to_npz(tmp / INPUTS_REL)
    progress.stage("computing float reference outputs")
    # The uncompressed model is the reference, so the verdict covers compression + quantization together.
    ref, ref_kind = reference_outputs(dataclasses.replace(model.captured, source=model.float_source), model.ev,
                                      list(model.output_names))
    save_npz(tmp / REFERENCE_REL, ref)
    return ref, ref_kind


def first_scheme(config: PipelineConfig, outliers: JSONObject, fmt: str) -> QuantOptions:
    """The first INT8 model of ``fmt``: dynamic when the preparation's simulation predicts it beats static
    (``outliers["scheme_prediction"]``), so a transformer's hopeless static model is never built and lowered
    (MiniLM: ≈ 14 min for the static ``.pte`` alone); the target's scheme otherwise. Only when the search may run
    (with ``--no-search`` the user gets the scheme asked for) and the user did not pick a mode explicitly."""
    prediction = get_object_or_none(outliers, "scheme_prediction") or {}
    pick = (get_object_or_none(prediction, "pick") or {}).get(fmt)
    if pick != "dynamic" or config.search.mode in ("off", "grid") or config.quant.mode != "static":
        return config.quant
    # the dynamic search move's settings: per-channel weights, full-range INT8 (the scale is per run), one scale
    # per token (ONNX: edgeq.onnx.per_token; a .pte's dynamic INT8 always is)
    return dataclasses.replace(config.quant, mode="dynamic", per_token=fmt == "onnx",
                               per_channel=True if config.quant.per_channel is None else config.quant.per_channel,
                               reduce_range=False if config.quant.reduce_range is None else config.quant.reduce_range)


def linear_ranking(outliers: JSONObject) -> list[str]:
    """Linear modules, most sensitive first (the preparation's sensitivity pass), for the search's linear moves;
    empty for convolution-dominated models (their moves are the static ones)."""
    if not outliers.get("linear_dominated"):
        return []
    return [get_str(r, "module") for r in get_objects(outliers, "linear_sensitivity")
            if (number_or_none(r.get("share")) or 0.0) > 0]
