"""Run the ``--compress`` methods in order on the float torch model, before capture, and record their effect."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edgeq.compress.qat_graph import QatGraph
from edgeq.compress.registry import CompressContext, TargetScheme, get_method, param_count
from edgeq.compress.spec import CompressOptions
from edgeq.compress.train import Trainer, load_train_set
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.progress import Progress

if TYPE_CHECKING:
    import torch

EXAMPLE_BATCH = 2  # a dynamic batch in torch.export needs >= 2


def compress_model(model: torch.nn.Module, options: CompressOptions, calib: Dataset, input_names: list[str],
                   scheme: TargetScheme | None = None, progress: Progress | None = None, *,
                   handoff: dict[str, QatGraph] | None = None) -> tuple[torch.nn.Module, JSONObject]:
    """Apply ``options.methods`` in order to ``model`` (a float nn.Module). Returns the model and a manifest record.

    ``scheme``: the target and per-channel setting the model will be quantized with (QAT imitates them).

    ``handoff`` (optional) receives in-memory results for the backends, e.g. ``handoff["qat"]``: a QatGraph.

    Fine-tuning uses ``--train-data`` (else the calibration data) and distils from the unmodified model.
    """
    import torch  # heavy: torch, imported only where a model is built or run

    progress = progress or Progress(enabled=False)
    scheme = scheme or TargetScheme()
    if not options.enabled:
        return model, {}
    if not isinstance(model, torch.nn.Module):
        raise UsageError("--compress needs a PyTorch model (pkg.module:factory)",
                         "an .onnx or .pt2 source has no trainable module; pass the factory instead")
    data = load_train_set(options.train.data, calib, input_names)
    if len(data) < EXAMPLE_BATCH:
        raise UsageError(f"{data.source}: {len(data)} training sample(s); compression needs at least {EXAMPLE_BATCH}")
    example, _ = data.batch(torch.arange(EXAMPLE_BATCH))
    example = tuple(t.clone().contiguous() for t in example)
    model = model.eval()
    trainer = Trainer.create(model, data, options.train, progress)
    records: list[JSONObject] = []
    record: JSONObject = {**options.to_dict(), "train_data": data.source, "train_samples": len(data),
                          "has_labels": data.labels is not None, "params_float": param_count(model),
                          "steps": records}
    steps = options.train.steps
    for cfg in options.methods:
        t0 = time.perf_counter()
        progress.stage(f"compress: {cfg.name} (level {cfg.level:g})")
        ctx = CompressContext(trainer=trainer, example=example, progress=progress, steps=steps, target=scheme.target,
                              per_channel=scheme.per_channel, handoff=handoff)
        model, rec = get_method(cfg.name)(model, cfg, ctx)
        model.eval()
        rec = {"method": cfg.name, "level": cfg.level, **rec, "params": param_count(model),
               "teacher_agreement": round(trainer.agreement(model), 5),
               "seconds": round(time.perf_counter() - t0, 2)}
        records.append(rec)
    record["params_compressed"] = param_count(model)
    return model, record
