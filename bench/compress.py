"""Compression beyond PTQ on real data: every method's bytes, latency (ONNX Runtime and ExecuTorch, host) and
accuracy against the INT8-only model, from one ``edgeq sweep --methods`` per model.

Budget: at most 1 pt accuracy drop against the uncompressed float model (``--min-cosine 0`` because a compressed
model's logits legitimately differ from the original's: the task accuracy is the criterion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.table import Table

TITLE = "Compression beyond PTQ (edgeq sweep --methods; host runners)"
STEPS = 150


def _sweep(model: str, calib: Path, ev: Path, methods: str, out: Path) -> dict[str, Any]:
    from edgeq.compress.spec import CompressOptions, TrainOptions
    from edgeq.compress.sweep import parse_ladders, run_compress_sweep
    from edgeq.config import Budget, PipelineConfig, SearchOptions
    from edgeq.progress import Progress

    cfg = PipelineConfig(model=model, calib=str(calib), eval=str(ev), output=out, formats=("onnx", "pte"),
                         budget=Budget(max_accuracy_drop=1.0, min_cosine=0.0), validate_on=("host",),
                         search=SearchOptions(mode="off"), force=True,
                         compress=CompressOptions((), TrainOptions(steps=STEPS)))
    return run_compress_sweep(cfg, parse_ladders(methods), workers=2, progress=Progress(True))


def _warm(model: str) -> None:
    """Train (or load) the model once here, so the parallel trials do not all train it at the same time."""
    from edgeq.source import load_source

    load_source(model)


def run(workdir: Path) -> Table:
    from bench.compress_models import write_cancer_data
    from edgeq.zoo.digits import write_digits_data

    t = Table(["model", "variant", "ORT bytes", "ORT ms", "PTE bytes", "PTE ms", "accuracy", "float acc.",
               "× bytes vs INT8 (ORT/PTE)", "speed-up vs INT8 (ORT/PTE)", "budget"])
    cases = [
        ("digits_wide_cnn", "edgeq.zoo.digits:digits_wide_cnn", write_digits_data(workdir / "digits"),
         "prune:0.5:0.7,lowrank:0.9,cluster:16,sparse:0.5"),
        ("cancer_mlp", "bench.compress_models:cancer_mlp", write_cancer_data(workdir / "cancer"),
         "prune:0.5:0.7,lowrank:0.9,cluster:16"),
    ]
    for label, model, (calib, ev), methods in cases:
        _warm(model)
        s = _sweep(model, calib, ev, methods, workdir / label)
        base = next(r for r in s["variants"] if r["name"] == "int8")
        for r in s["variants"]:
            o, p = r["formats"].get("onnx", {}), r["formats"].get("pte", {})
            bo, bp = base["formats"].get("onnx", {}), base["formats"].get("pte", {})

            def ratio(a: dict[str, Any], b: dict[str, Any], key: str, inv: bool = False) -> str:
                if not a.get(key) or not b.get(key):
                    return "–"
                v = b[key] / a[key] if inv else a[key] / b[key]
                return f"{v:.2f}"

            t.add(label, r["name"] + (" ★" if r["name"] == s["pick"] else ""), o.get("bytes"), o.get("latency_ms"),
                  p.get("bytes"), p.get("latency_ms"), r.get("accuracy"), r.get("reference_accuracy"),
                  f"{ratio(o, bo, 'bytes')} / {ratio(p, bp, 'bytes')}",
                  f"{ratio(o, bo, 'latency_ms', True)} / {ratio(p, bp, 'latency_ms', True)}",
                  "pass" if r["passed"] else "FAIL")
    t.notes.append(f"Fine-tune: {STEPS} AdamW steps per method (distillation + labels). ★ = the sweep's pick "
                   "(smallest, then fastest, inside the budget). sparse/cluster artifacts are dense: their size "
                   "and speed equal INT8's by design (see the manifest's sparse_int8_bytes / palettised_bytes).")
    return t
