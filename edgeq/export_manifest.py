"""The manifest of a tensor-model export (``edgeq.json``): what was built from what, validated how, and the verdict.

:func:`edgeq.api.export` gathers the facts; this module only writes them down, in the manifest's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.capture import Captured
from edgeq.config import Budget, PipelineConfig
from edgeq.config_file import config_to_dict
from edgeq.data import Dataset
from edgeq.hashing import sha256_file
from edgeq.jsontypes import JSONObject
from edgeq.manifest import Artifact, FileRef, Manifest, Source, TargetInfo, Tool, ValidationData
from edgeq.outdir import INPUTS_REL, REFERENCE_REL
from edgeq.signature import TensorSpec
from edgeq.source import ModelSource
from edgeq.targetspec import Target
from edgeq.validate.fleet import is_board_spec
from edgeq.validate.orchestrate import verdict


@dataclass(frozen=True)
class ExportRecord:
    """Everything an export's manifest records, gathered once the artifacts are built and validated."""

    config: PipelineConfig
    target: Target
    budget: Budget  # in force: the flags over the target's defaults
    runners: tuple[str, ...]  # the local runners that validated (boards are in ``fleet``)
    source: ModelSource  # the model the artifacts were built from (compressed, when --compress)
    captured: Captured
    ev: Dataset
    reference: dict[str, np.ndarray]
    reference_kind: str
    output_names: tuple[str, ...]
    resolved_quant: dict[str, JSONObject]  # per format, after the target's scheme and the user's options
    pass_log: list[JSONObject]
    artifacts: list[Artifact]
    fleet: JSONObject | None = None  # the boards' record (edgeq.validate.fleet_run.FleetRun.record)


def compose_manifest(rec: ExportRecord, folder: Path) -> Manifest:
    """The manifest of ``rec``; ``folder`` holds the validation data it hashes."""
    config, captured = rec.config, rec.captured
    recorded: JSONObject = {"recorded": config_to_dict(config), "resolved_quant": rec.resolved_quant,
                          "formats": list(config.formats), "quant": config.quant.to_dict(),
                          "eval_fraction": config.eval_fraction, "seed": config.seed, "opset": config.opset,
                          "max_eval_samples": config.max_eval_samples,
                          "validate_on": [*rec.runners, *(s for s in config.validate_on if is_board_spec(s))],
                          "calib": str(config.calib), "eval": config.eval, "dynamic_batch": captured.dynamic_batch,
                          "static_batch_reason": captured.static_batch_reason,
                          "search": config.search.to_dict(), "compress": config.compress.to_dict()}
    inputs = [s.to_dict() for s in captured.signature]
    if config.preprocess is not None:  # image-folder data: apps must preprocess exactly this way
        recorded["preprocess"] = config.preprocess.to_dict()
        for spec in inputs:
            spec["preprocessing"] = config.preprocess.to_dict()
            spec["layout"] = config.preprocess.layout
    validation_data = ValidationData(
        inputs=FileRef(INPUTS_REL, sha256_file(folder / INPUTS_REL)),
        reference=FileRef(REFERENCE_REL, sha256_file(folder / REFERENCE_REL), rec.reference_kind),
        samples=len(rec.ev), has_labels=rec.ev.labels is not None,
        source=config.eval or f"{config.calib} (held-out {config.eval_fraction:.0%} split, seed {config.seed})")
    return Manifest(
        tool=Tool.now(), source=Source(rec.source.ref, rec.source.kind, rec.source.sha256),
        target=TargetInfo.of(rec.target), config=recorded, budget=rec.budget.to_dict(),
        signature={"inputs": inputs, "outputs": [output_spec(n, rec.reference[n], captured.dynamic_batch).to_dict()
                                                 for n in rec.output_names]},
        validation_data=validation_data, passes=tuple(rec.pass_log), artifacts=tuple(a.to_dict() for a in rec.artifacts),
        verdict=verdict(rec.artifacts, rec.pass_log, rec.fleet), fleet=rec.fleet)


def output_spec(name: str, arr: np.ndarray, dynamic: bool) -> TensorSpec:
    shape: tuple[int | str, ...] = (("batch" if dynamic else 1), *arr.shape[1:])
    return TensorSpec(name, str(arr.dtype), shape)
