"""Helpers shared by benchmark sections: measure an ONNX file the way the host runner does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeq.validate.metrics import compare

LATENCY_REPEATS = 200


def load_npz(p: Path) -> dict[str, np.ndarray]:
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def measure_onnx(model: Path, outdir: Path, threads: int = 1) -> dict[str, Any]:
    """Accuracy/fidelity against the stored float reference + median single-sample latency (1 thread)."""
    from edgeq.validate.device import run_onnx

    inputs = outdir / "validation/inputs.npz"
    out = model.with_suffix(".bench-out.npz")
    info = run_onnx.run(str(model), str(inputs), str(out), warmup=20, repeats=LATENCY_REPEATS, threads=threads)
    ref = load_npz(outdir / "validation/reference.npz")
    labels = load_npz(inputs).get("labels")
    m = compare(ref, load_npz(out), labels)
    out.unlink()
    return {"bytes": model.stat().st_size, "accuracy": m.accuracy, "reference_accuracy": m.reference_accuracy,
            "top1": m.top1_agreement, "cosine": m.cosine_mean, "sqnr": m.sqnr_db, "latency_ms": info["latency_ms_median"]}
