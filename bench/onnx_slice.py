"""Float vs edgeq static INT8 vs plain `onnxruntime.quantization.quantize_static` defaults (ONNX, host)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import measure_onnx
from bench.table import Table

TITLE = "ONNX: float vs edgeq INT8 vs plain quantize_static (x86-64 host, 1 thread)"

MODELS = [("digits CNN (18 k params)", "edgeq.zoo.digits:digits_cnn"),
          ("digits wide CNN (1.07 M params)", "edgeq.zoo.digits:digits_wide_cnn")]


def plain_quantize_static(fp32: Path, dst: Path, calib_npz: Path, n: int = 256) -> None:
    """What a user gets from the documented one-liner: QDQ, per-tensor, QInt8/QInt8, MinMax, no pre-processing."""
    from onnxruntime.quantization import quantize_static

    from edgeq.data import load_dataset
    from edgeq.onnx.quantize import reader_class

    quantize_static(str(fp32), str(dst), reader_class()(load_dataset(calib_npz).head(n)))


def run(workdir: Path) -> Table:
    import edgeq
    from edgeq.zoo.digits import write_digits_data

    workdir.mkdir(parents=True, exist_ok=True)
    calib, ev = write_digits_data(workdir / "data")
    t = Table(["model", "variant", "bytes", "× float bytes", "accuracy", "Δacc (pt)", "top-1 agree", "cosine",
               "SQNR dB", "latency ms", "× float latency", "export s"])
    for label, ref in MODELS:
        t0 = time.perf_counter()
        res = edgeq.export(ref, calib=str(calib), eval=str(ev), output=workdir / ref.split(":")[1], force=True)
        export_s = time.perf_counter() - t0
        out = res.output
        plain = out / "plain.int8.onnx"
        plain_quantize_static(out / "model.fp32.onnx", plain, calib)
        rows = [("float (fp32)", measure_onnx(out / "model.fp32.onnx", out), None),
                ("edgeq INT8", measure_onnx(out / "model.int8.onnx", out), export_s),
                ("plain quantize_static", measure_onnx(plain, out), None)]
        base = rows[0][1]
        for name, r, secs in rows:
            t.add(label, name, r["bytes"], r["bytes"] / base["bytes"], r["accuracy"],
                  100 * (r["accuracy"] - base["accuracy"]), r["top1"], r["cosine"], r["sqnr"], r["latency_ms"],
                  r["latency_ms"] / base["latency_ms"], secs)
    t.notes.append("Evaluation: the 450-image scikit-learn digits test split (real handwritten digits). Accuracy "
                   "delta is against the float model on the same data. Latency: median of 200 single-sample "
                   "onnxruntime runs after 20 warm-ups, 1 intra-op thread, on this CI host (not a device).")
    return t
