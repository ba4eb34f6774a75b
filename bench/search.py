"""Plain ``quantize_static`` vs edgeq's accuracy-aware search, on the trained text encoder and the digits CNN.

Plain = ``onnxruntime.quantization.quantize_static(float, out, reader)`` with its defaults (QDQ, S8S8,
per-tensor, MinMax) on the same pre-processed float graph and calibration samples. edgeq = ``edgeq.export`` on
the x86-64 target with ``--search`` and the budget below; the search wall time is the search alone.
For the encoder the top-1 metric is meaningless (the output is an embedding), so its budget is cosine only
(``max_accuracy_drop=100`` switches the target's top-1 default off); nearest-neighbour agreement is reported
(for each eval sentence: is its nearest other sentence by cosine the same with the INT8 embeddings as with float).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.table import Table

TITLE = "Accuracy-aware quantization: plain quantize_static vs edgeq search (host, x86-64)"


def _nn_agreement(ref: np.ndarray, out: np.ndarray) -> float:
    def nn(e: np.ndarray) -> np.ndarray:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return s.argmax(1)

    return float((nn(ref.astype(np.float64)) == nn(out.astype(np.float64))).mean())


def _run(path: Path, inputs: Path, work: Path) -> tuple[dict[str, np.ndarray], float]:
    from edgeq.validate.runners.host import HostRunner

    r = HostRunner().run(path, "onnx", inputs, work)
    return r.outputs, float(r.latency_ms)


def _plain(prepped: Path, out: Path, calib: Any) -> None:
    from onnxruntime.quantization import quantize_static

    from edgeq.onnx.quantize import quiet_stdout, reader_class

    with quiet_stdout():
        quantize_static(str(prepped), str(out), reader_class()(calib))


def _case(t: Table, name: str, model: str, calib: Path, ev: Path, budget: Any, work: Path, embed: bool) -> None:
    import edgeq
    from edgeq.config import SearchOptions
    from edgeq.data import load_dataset
    from edgeq.onnx.export import preprocess
    from edgeq.validate.metrics import compare
    from edgeq.validate.orchestrate import load_npz

    out = work / name
    t0 = time.perf_counter()
    res = edgeq.export(model, calib=str(calib), eval=str(ev), output=out, target="x86-64", budget=budget,
                       search=SearchOptions(mode="always", max_trials=16, max_seconds=300))
    total = time.perf_counter() - t0
    m = res.manifest
    inputs = out / "validation/inputs.npz"
    ref = load_npz(out / "validation/reference.npz")
    labels = load_npz(inputs).get("labels")
    prepped, _ = preprocess(out / "model.fp32.onnx", work / f"{name}.prep.onnx")
    _plain(prepped, work / f"{name}.plain.onnx", load_dataset(calib).head(256))
    key = next(iter(ref))
    rows = [("float32", out / "model.fp32.onnx", None), ("plain quantize_static", work / f"{name}.plain.onnx", None),
            ("edgeq search", out / "model.int8.onnx", m.get("search"))]
    base_bytes = base_lat = None
    for label, path, s in rows:
        outs, lat = _run(path, inputs, work)
        outs = {k: outs[k] for k in ref} if set(ref) <= set(outs) else {key: next(iter(outs.values()))}
        mt = compare(ref, outs, labels)
        size = path.stat().st_size
        base_bytes = base_bytes or size
        base_lat = base_lat or lat
        extra = (_nn_agreement(ref[key], outs[key]) if embed else
                 (mt.accuracy if mt.accuracy is not None else mt.top1_agreement))
        if extra is None and labels is not None and outs[key].ndim == 3:  # causal LM: next-token accuracy
            extra = float((outs[key][:, -1].argmax(-1) == labels).mean())
        t.add(name, label, round(mt.cosine_mean, 5), round(extra, 4) if extra is not None else None,
              round(mt.sqnr_db, 2), size, round(size / base_bytes, 3), round(lat, 3), round(lat / base_lat, 2),
              round(s["seconds"], 1) if s else None, len(s["trials"]) if s else None,
              ("met" if s["met"] else "NOT met") + f" (trial {s['best']})" if s else None)
    t.notes.append(f"{name}: export + search {total:.1f} s wall; budget {budget.to_dict()}; "
                   f"verdict {'PASS' if res.passed else 'FAIL'}")


def run(workdir: Path) -> Table:
    from edgeq.config import Budget
    from edgeq.zoo.digits import write_digits_data
    from edgeq.zoo.text import write_text_data

    workdir.mkdir(parents=True, exist_ok=True)
    t = Table(["model", "variant", "cos mean", "NN agree / accuracy", "SQNR dB", "bytes", "× float",
               "host ms", "× float ms", "search s", "trials", "budget"])
    calib, ev = write_text_data(workdir / "text", n_calib=128, n_eval=256)
    _case(t, "text encoder", "edgeq.zoo.text:text_encoder", calib, ev,
          Budget(min_cosine=0.99, max_accuracy_drop=100.0), workdir, embed=True)
    _case(t, "text encoder (strict)", "edgeq.zoo.text:text_encoder", calib, ev,
          Budget(min_sqnr=40.0, max_accuracy_drop=100.0), workdir, embed=True)
    tcal, tev = write_text_data(workdir / "text", model="decoder", n_calib=128, n_eval=256)
    _case(t, "text decoder", "edgeq.zoo.text:text_decoder", tcal, tev, Budget(min_sqnr=25.0), workdir, embed=False)
    dcal, dev = write_digits_data(workdir / "digits")
    _case(t, "digits CNN", "edgeq.zoo.digits:digits_cnn", dcal, dev, Budget(max_accuracy_drop=0.5, min_cosine=0.99),
          workdir, embed=False)
    t.notes.append("Latency: host runner median (batch as recorded by the device script), shared 2-core CI host. "
                   "'NN agree' = nearest-neighbour agreement of the encoder's embeddings vs float; digits: accuracy; "
                   "decoder: next-token accuracy at the last position.")
    return t
