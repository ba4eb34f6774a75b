"""QAT against PTQ on real data, on both runtimes: does training under fake quantization win back what
post-training quantization loses where PTQ misses the budget?

Case: scikit-learn digits, the demo CNN (``edgeq.zoo.digits:digits_cnn``), 4-bit symmetric per-tensor weights
(``--compress qat:4 --per-tensor``) with INT8 activations. PTQ = the same quantizer calibrated without fine-tuning
(``--train-steps 0``); QAT = ``--train-steps N``. Both formats ship the QAT graph's ranges (``.pte``:
``convert_pt2e``; ONNX: QDQ int4 weights + the QAT activation scales), validated on the host runners against the
float model. The plain INT8 export is listed for reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.table import Table

TITLE = "QAT vs PTQ (4-bit per-tensor weights, digits CNN; host runners)"
MODEL = "edgeq.zoo.digits:digits_cnn"
STEPS = 600
SEED = 0


def _export(calib: Path, ev: Path, out: Path, compress: str | None, steps: int) -> dict[str, Any]:
    from edgeq.api import export
    from edgeq.compress.spec import CompressOptions
    from edgeq.config import Budget, PipelineConfig, QuantOptions, SearchOptions
    from edgeq.progress import Progress

    cfg = PipelineConfig(model=MODEL, calib=str(calib), eval=str(ev), output=out, formats=("onnx", "pte"),
                         budget=Budget(max_accuracy_drop=1.0, min_cosine=0.0), validate_on=("host",),
                         quant=QuantOptions(per_channel=False), search=SearchOptions(mode="off"), force=True,
                         seed=SEED, compress=CompressOptions.from_spec(compress, steps=steps, seed=SEED))
    return export(cfg, Progress(True)).manifest


def _accuracies(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """artifact name -> {accuracy, bytes, latency_ms, ranges} of its first (host) validation."""
    out = {}
    for a in m["artifacts"]:
        if not a["validations"]:
            continue
        v = a["validations"][0]
        out[a["name"]] = {"accuracy": v["metrics"].get("accuracy"), "bytes": a["bytes"],
                          "latency_ms": v["latency_ms"], "passed": v["budget_check"].get("passed"),
                          "ranges": ((a.get("quantization") or {}).get("ranges") or {}).get("source")}
    return out


def run(workdir: Path) -> Table:
    from edgeq.zoo.digits import write_digits_data

    calib, ev = write_digits_data(workdir / "digits")
    runs = {"INT8 PTQ (plain export)": _export(calib, ev, workdir / "int8", None, 0),
            "4-bit PTQ (qat:4, --train-steps 0)": _export(calib, ev, workdir / "ptq4", "qat:4", 0),
            f"4-bit QAT (qat:4, --train-steps {STEPS})": _export(calib, ev, workdir / "qat4", "qat:4", STEPS)}
    t = Table(["variant", "format", "bytes", "host ms", "accuracy", "float acc.", "drop (pt)", "ranges shipped",
               "QAT recovers", "budget"])
    ptq = _accuracies(runs["4-bit PTQ (qat:4, --train-steps 0)"])
    float_acc = _accuracies(runs["INT8 PTQ (plain export)"])
    for label, m in runs.items():
        acc = _accuracies(m)
        for fmt in ("onnx", "pte"):
            cand = acc.get(f"{fmt}-int8-static", {})
            fl = float_acc.get(f"{fmt}-fp32", {}).get("accuracy")
            recovered = "–"
            if label.startswith("4-bit QAT") and fl is not None:
                p = ptq.get(f"{fmt}-int8-static", {}).get("accuracy")
                if p is not None and cand.get("accuracy") is not None and fl - p > 0:
                    recovered = f"{(cand['accuracy'] - p) / (fl - p):.0%} of {100 * (fl - p):.2f} pt"
            drop = None if fl is None or cand.get("accuracy") is None else round(100 * (fl - cand["accuracy"]), 2)
            t.add(label, fmt, cand.get("bytes"), cand.get("latency_ms"), cand.get("accuracy"), fl, drop,
                  cand.get("ranges"), recovered, "pass" if cand.get("passed") else "FAIL")
    t.notes.append(f"Budget: <= 1 pt accuracy drop vs the float model (450 held-out digits). QAT: {STEPS} AdamW "
                   "steps, distillation + labels, --seed 0. 'ranges shipped' = where the artifact's scales come "
                   "from (manifest artifacts[].quantization.ranges.source). The .pte stores 4-bit values in int8 "
                   "(XNNPACK static QS8 kernels); the ONNX file packs them as int4 QDQ initialisers.")
    return t
