"""The pipeline's two touch points: compress the source before capture, and summarise the measured effect after
validation (bytes, gzip bytes, latency per runner, accuracy for every artifact) into ``manifest["compression"]``.

The uncompressed float model stays the reference every artifact is validated against, so the verdict covers
compression and quantization together: a compressed model cannot pass by being compared with itself.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.compress.apply import compress_model
from edgeq.compress.qat_graph import QatGraph
from edgeq.compress.registry import TargetScheme
from edgeq.compress.spec import CompressOptions
from edgeq.compress.train import first_tensor
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.progress import Progress
from edgeq.source import ModelSource, state_hash
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch

    from edgeq.manifest import Artifact


def compress_source(source: ModelSource, options: CompressOptions, calib: Dataset, ev: Dataset, target: Target,
                    progress: Progress, per_channel: bool | None = None) -> tuple[ModelSource, JSONObject]:
    """A new source holding the compressed module (``source`` itself is untouched) and the compression record.

    After QAT the source also carries the trained fake-quant graph (``source.qat``) for the backends to reuse;
    ``source.compression`` lists the methods applied, in order, which each INT8 candidate's recipe records."""
    if source.kind != "factory" or source.module is None:
        raise UsageError(f"--compress needs a PyTorch factory model, got a {source.kind} source ({source.ref})",
                         "pass pkg.module:factory so edgeq can fine-tune the module")
    names = [s.name for s in source.declared_signature] if source.declared_signature else list(source.input_names)
    handoff: dict[str, QatGraph] = {}
    module, record = compress_model(copy.deepcopy(source.module), options, calib, names,
                                    TargetScheme(target, per_channel), progress, handoff=handoff)
    record["float_eval"] = _float_effect(source.module, module, ev, names)
    record["compressed_sha256"] = state_hash(module)
    return dataclasses.replace(source, module=module.eval(), qat=handoff.get("qat"), compression=options.methods), record


def _float_effect(original: torch.nn.Module, compressed: torch.nn.Module, ev: Dataset, names: list[str]) -> JSONObject:
    """Before quantization: how far the compressed float model is from the original on the evaluation data."""
    import torch  # heavy: torch, imported only where a model is built or run

    args = tuple(torch.from_numpy(np.ascontiguousarray(ev.inputs[n])) for n in names)
    with torch.no_grad():
        a = first_tensor(original.eval()(*args)).float()
        b = first_tensor(compressed.eval()(*args)).float()
    out: JSONObject = {"samples": len(ev),
                       "cosine": float(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).mean())}
    if a.dim() == 2 and a.shape[1] > 1:
        out["top1_agreement"] = float((a.argmax(1) == b.argmax(1)).float().mean())
        if ev.labels is not None:
            y = torch.from_numpy(ev.labels.astype(np.int64))
            out["accuracy_original"] = float((a.argmax(1) == y).float().mean())
            out["accuracy_compressed"] = float((b.argmax(1) == y).float().mean())
    return out


def gzip_bytes(path: Path) -> int:
    """Download size: zeros (sparsity) and repeated values (clustering) compress; dense random weights do not."""
    return len(gzip.compress(path.read_bytes(), compresslevel=6, mtime=0))


def effect_summary(outdir: Path, artifacts: list[Artifact]) -> list[JSONObject]:
    """Per validated artifact: bytes, gzip bytes, latency per runner and accuracy metrics, as measured."""
    rows = []
    for a in artifacts:
        if a.role == "auxiliary":
            continue
        p = outdir / a.path
        runners: list[JSONObject] = []
        row: JSONObject = {"artifact": a.name, "format": a.format, "precision": a.precision, "bytes": a.bytes,
                           "gzip_bytes": gzip_bytes(p) if p.is_file() else None, "runners": runners}
        for v in a.validations:
            runners.append({"runner": v.runner, "latency_ms": v.latency_ms,
                                   "accuracy": v.metrics.get("accuracy"),
                                   "accuracy_drop_pts": v.metrics.get("accuracy_drop_pts"),
                                   "cosine": v.metrics.get("cosine_mean"),
                                   "top1_agreement": v.metrics.get("top1_agreement"),
                                   "passed": v.budget_check.get("passed")})
        rows.append(row)
    return rows
