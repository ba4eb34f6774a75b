"""CNN weight rounding on real ImageNet CNNs: first INT8 vs the GPTQ preparation vs learned rounding (AdaRound).

For each model (``--model``; the tuning group EfficientNet-Lite0/Lite1, the held-out group
:data:`bench.real_quant.HELD_OUT`), 200 calibration / 400 held-out real-photo crops (:func:`bench.real_models.
photo_crops`), three INT8 models per format, each quantized by edgeq's own static path with the same data:

- ``first INT8``: the model as given (what a plain ``edgeq export`` builds first);
- ``GPTQ``: the current CNN preparation (CLE, act-order GPTQ rounding of convs and the classifier, bias correction);
- ``AdaRound``: the same with :func:`edgeq.outliers.adaround` in place of GPTQ.

ONNX: :func:`edgeq.onnx.quantize.quantize_onnx_static` (QDQ, per-channel symmetric int8 weights, uint8
activations, MinMax: the x86-64 VNNI host scheme). ``.pte``: PT2E + XNNPACK static per-channel (int8
activations). Columns: top-1 agreement with the float PyTorch model on the 400 held-out crops, size x the float
artifact of the format, the preparation's seconds and the host load while it ran.
``python -m bench.cnn_rounding --model efficientnet_lite0`` (``--model`` repeats; ``--format onnx|pte``).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.real_models import IMAGE_MODELS, example_arrays, photo_crops
from bench.real_quant import HELD_OUT, export_onnx, load_factory, pte_build, pte_float, rows_of, torch_outputs

N_CALIB, N_EVAL = 200, 400
ONNX_SCHEME = dict(mode="static", calibration="minmax", per_channel=True, activation_type="uint8",
                   weight_type="int8", reduce_range=False, max_calibration_samples=N_CALIB)


def prepared(model: Any, calib: dict[str, np.ndarray], rounding: str) -> tuple[Any, float, dict[str, Any]]:
    from edgeq.outliers import prepare_for_int8
    from edgeq.prepare import conv_outlier_config
    from edgeq.progress import Progress

    if rounding == "first":
        return model, 0.0, {}
    log: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    m = prepare_for_int8(copy.deepcopy(model), calib, conv_outlier_config(rounding, N_CALIB), log=log,
                         progress=Progress(enabled=sys.stderr.isatty()))
    # CPU seconds of this process (all threads): on a shared host the wall time says more about the neighbours
    log["cpu_seconds"] = round(time.process_time() - c0, 1)
    return m.eval(), time.perf_counter() - t0, log


def onnx_int8(model: Any, example: dict[str, np.ndarray], calib: dict[str, np.ndarray], d: Path, tag: str) -> Path:
    from edgeq.config import QuantOptions
    from edgeq.data import Dataset
    from edgeq.onnx.quantize import quantize_onnx_static

    src = export_onnx(model, example, d / f"{tag}.fp32.onnx")
    dst = d / f"{tag}.int8.onnx"
    quantize_onnx_static(src, dst, Dataset(dict(calib)), QuantOptions(**ONNX_SCHEME))  # type: ignore[arg-type]
    return dst


def outputs(fmt: str, path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    from bench.real_quant import SESSIONS

    run = SESSIONS[fmt](path)
    return np.concatenate([run(r) for r in rows_of(data)])


def model_rows(name: str, d: Path, formats: tuple[str, ...],
               roundings: tuple[str, ...] = ("first", "gptq", "adaround")) -> list[list[str]]:
    from bench.real_quant import MODELS

    d.mkdir(parents=True, exist_ok=True)
    size = IMAGE_MODELS[name]
    model, ex = load_factory(MODELS[name].factory)()
    example = example_arrays(ex)
    calib = {"image": photo_crops("calib", N_CALIB, size=size)}
    ev = {"image": photo_crops("eval", N_EVAL, size=size)}
    ref = torch_outputs(model, ev)
    float_bytes = {}
    if "onnx" in formats:
        float_bytes["onnx"] = export_onnx(model, example, d / "float.onnx").stat().st_size
    if "pte" in formats:
        float_bytes["pte"] = pte_float(model, example, d / "float.pte").stat().st_size
    group = "held-out" if name in HELD_OUT else "tuning"
    out = []
    for rounding in roundings:
        load0 = os.getloadavg()[0]
        m, secs, log = prepared(model, calib, rounding)
        load = f"{load0:.1f}/{os.getloadavg()[0]:.1f}"
        print(f"  {name} {rounding}: prepared in {secs:.0f} s wall, {log.get('cpu_seconds', 0)} s CPU "
              f"(load {load})",
              file=sys.stderr, flush=True)
        for fmt in formats:
            path = (onnx_int8(m, example, calib, d, rounding) if fmt == "onnx"
                    else pte_build(m, example, calib, d / f"{rounding}.pte", "static"))
            agree = float((outputs(fmt, path, ev).argmax(1) == ref.argmax(1)).mean())
            row = [name, group, "ONNX" if fmt == "onnx" else "`.pte`", rounding, f"{agree:.4f}",
                   f"{path.stat().st_size / float_bytes[fmt]:.3f}", f"{secs:.0f}" if secs else "–",
                   load if secs else "–"]
            print("  " + " | ".join(row), file=sys.stderr, flush=True)
            out.append(row)
    return out


def main() -> None:
    import argparse
    import tempfile

    import torch

    from bench.table import Table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], choices=list(IMAGE_MODELS))
    ap.add_argument("--format", action="append", default=[], choices=["onnx", "pte"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounding", default="first,gptq,adaround", help="variants, in this order")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    table = Table(["model", "group", "format", "rounding", "top-1 agree", "size x float", "prepare s",
                   "load 1-min (start/end)"])
    with tempfile.TemporaryDirectory(prefix="edgeq-cnn-rounding-") as tmp:
        for name in a.model or list(IMAGE_MODELS):
            for row in model_rows(name, Path(tmp) / name, tuple(a.format) or ("onnx", "pte"),
                                  tuple(a.rounding.split(","))):
                table.add(*row)
    print(table.markdown())


if __name__ == "__main__":
    main()
