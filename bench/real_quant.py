"""Quantization on real pretrained models: edgeq's outlier-aware PTQ vs the plain one-liners, both formats.

For every real model in :mod:`bench.real_models` and every method, one row: cosine to float (mean / min),
nearest-neighbour agreement (encoders) or top-1 agreement (classifiers), size x float, latency x float (median
batch-1 latency on this host), build time. Plain baselines: onnxruntime ``quantize_static`` (QDQ, per-channel,
MinMax, its default U8S8), ``quantize_dynamic`` (its defaults), PT2E + XNNPACK static per-channel (edgeq's
integer-safe XNNPACKQuantizer; the stock one crashes on BERT's index path — with the stock ReLU6 annotation,
i.e. the clamp not fused into the conv before it). edgeq rows: ``prepare_for_int8`` (cross-layer equalization,
bias correction, SmoothQuant, INT8 embeddings where the model has the pattern), then ORT static S8S8 per-channel
(CNNs) / dynamic (encoders), and PT2E with ReLU6 fused into convs. Run with
``python -m bench.run --only real_quant`` (part of ``make bench``) or ``python -m bench.real_quant``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.real_models import example_arrays
from bench.table import Table

TITLE = "Quantization on real pretrained models (edgeq vs plain ORT static / dynamic / PT2E + XNNPACK)"
N_CALIB = {"minilm": 64, "efficientnet_lite0": 64}
N_EVAL = {"minilm": 120, "efficientnet_lite0": 200}


@dataclass
class Case:
    name: str
    factory: Callable[[], tuple[Any, dict[str, np.ndarray]]]
    calib: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    kind: str  # "embedding" | "logits"


def cases(names: tuple[str, ...] = ("minilm", "efficientnet_lite0")) -> list[Case]:
    from bench import real_models as rm

    out = []
    for name in names:
        if name == "minilm":
            ci, cm = rm.sentences("calib", N_CALIB[name])
            ei, em = rm.sentences("eval", N_EVAL[name])
            out.append(Case(name, rm.minilm_encoder, {"input_ids": ci, "attention_mask": cm},
                            {"input_ids": ei, "attention_mask": em}, "embedding"))
        else:
            out.append(Case(name, rm.efficientnet_lite0, {"image": rm.photo_crops("calib", N_CALIB[name])},
                            {"image": rm.photo_crops("eval", N_EVAL[name])}, "logits"))
    return out


def rows_of(data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(data.values())))
    return [{k: np.ascontiguousarray(v[i:i + 1]) for k, v in data.items()} for i in range(n)]


def torch_outputs(model: Any, data: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(*(torch.from_numpy(v) for v in r.values())).numpy() for r in rows_of(data)])


def metrics(kind: str, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    from edgeq.validate.metrics import cosine_per_sample, nn_agreement

    cos = cosine_per_sample(ref, out)
    m = {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
    if kind == "embedding":
        m["agree"] = float(nn_agreement(ref, out) or 0.0)
    else:
        m["agree"] = float((ref.argmax(1) == out.argmax(1)).mean())
    return m


# -- ONNX -----------------------------------------------------------------------------------------------------

def export_onnx(model: Any, example: dict[str, np.ndarray], path: Path) -> Path:
    import torch

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    args = tuple(torch.from_numpy(v) for v in example.values())
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        prog = torch.onnx.export(model, args, dynamo=True, opset_version=18, input_names=list(example),
                                 output_names=["output"], optimize=True)
    prog.save(str(path), external_data=False)
    return path


def ort_run(path: Path, data: dict[str, np.ndarray], repeats: int = 30) -> tuple[np.ndarray, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rows = rows_of(data)
    out = np.concatenate([sess.run(None, r)[0] for r in rows])
    for _ in range(5):
        sess.run(None, rows[0])
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, rows[i % len(rows)])
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times) * 1000)


class _Reader:
    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.rows = rows_of(data)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.rows):
            return None
        self.i += 1
        return self.rows[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def ort_static_plain(src: Path, dst: Path, calib: dict[str, np.ndarray], **kw: Any) -> None:
    """``quantize_static`` QDQ per-channel with its defaults (``kw`` overrides, e.g. ``activation_type``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class R(_Reader, CalibrationDataReader):
        pass

    prep = dst.with_suffix(".prep.onnx")
    try:
        quant_pre_process(str(src), str(prep))
    except Exception:  # noqa: BLE001  ORT's symbolic shape inference crashes on some exporter graphs (Expand)
        quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)
    quantize_static(str(prep), str(dst), R(calib), quant_format=QuantFormat.QDQ, per_channel=True, **kw)


def ort_dynamic_plain(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(src), str(dst))


# -- ExecuTorch ---------------------------------------------------------------------------------------------------

def pte_build(model: Any, example: dict[str, np.ndarray], calib: dict[str, np.ndarray], path: Path,
              mode: str, stock_clamps: bool = False) -> None:
    """``stock_clamps``: annotate as the stock XNNPACKQuantizer does (ReLU6 not fused into the conv before it),
    for the plain PT2E baseline row."""
    import torch

    from edgeq.config import QuantOptions
    from edgeq.data import Dataset
    from edgeq.executorch import quantize as eq
    from edgeq.executorch.lower import lower_to_executorch
    from edgeq.executorch.quantize import quantize_pt2e
    from edgeq.signature import TensorSpec

    args = tuple(torch.from_numpy(v) for v in example.values())
    ep = torch.export.export(model, args, strict=False)
    sig = [TensorSpec(k, str(v.dtype), tuple(v.shape)) for k, v in example.items()]
    opts = QuantOptions(mode=mode, per_channel=True, max_calibration_samples=len(next(iter(calib.values()))))
    fuse = eq.annotate_clamp_fusions
    if stock_clamps:
        eq.annotate_clamp_fusions = lambda *_a, **_k: 0  # type: ignore[assignment]
    try:
        qep, _ = quantize_pt2e(ep, Dataset(dict(calib)), sig, opts, None)
    finally:
        eq.annotate_clamp_fusions = fuse  # type: ignore[assignment]
    program, _ = lower_to_executorch(qep)
    path.write_bytes(program.buffer)


def pte_float(model: Any, example: dict[str, np.ndarray], path: Path) -> None:
    import torch

    from edgeq.executorch.lower import lower_to_executorch

    args = tuple(torch.from_numpy(v) for v in example.values())
    program, _ = lower_to_executorch(torch.export.export(model, args, strict=False))
    path.write_bytes(program.buffer)


def pte_run(path: Path, data: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    from edgeq.executorch.runtime import run_pte

    outs, lat = run_pte(path, list(data.values()))
    return next(iter(outs.values())), float(lat or 0.0)


# -- the table ------------------------------------------------------------------------------------------------

Runner = Callable[[Path, dict[str, np.ndarray]], tuple[np.ndarray, float]]


@dataclass
class Recorder:
    """Adds one measured row per (format, method) to the table, as ratios to that format's float artifact."""

    table: Table
    case: Case
    ref: np.ndarray

    def row(self, fmt: str, method: str, path: Path, base: tuple[int, float], seconds: float, runner: Runner) -> None:
        out, lat = runner(path, self.case.eval)
        m = metrics(self.case.kind, self.ref, out)
        self.table.add(self.case.name, fmt, method, f"{m['cos_mean']:.4f}", f"{m['cos_min']:.4f}",
                       f"{m['agree']:.3f}", f"{path.stat().st_size / base[0]:.3f}", f"{lat / base[1]:.2f}",
                       f"{seconds:.0f}")
        print(f"  {self.case.name} {fmt} {method}: {self.table.rows[-1][3:]}", file=sys.stderr, flush=True)


def run(workdir: Path, names: tuple[str, ...] = ("minilm", "efficientnet_lite0"),
        formats: tuple[str, ...] = ("onnx", "pte")) -> Table:
    workdir.mkdir(parents=True, exist_ok=True)
    table = Table(["model", "format", "method", "cos mean", "cos min", "NN / top-1 agree", "size x float",
                   "latency x float", "build s"])
    for case in cases(names):
        model, example = case.factory()
        example = example_arrays(example)
        rec = Recorder(table, case, torch_outputs(model, case.eval))
        d = workdir / case.name
        d.mkdir(exist_ok=True)
        bases: dict[str, tuple[tuple[int, float], Runner]] = {}
        if "onnx" in formats:
            fp = export_onnx(model, example, d / "fp32.onnx")
            _, fl = ort_run(fp, case.eval)
            base = (fp.stat().st_size, fl)
            rec.row("onnx", "float", fp, base, 0, ort_run)
            t0 = time.perf_counter()
            ort_static_plain(fp, d / "ort_static.onnx", case.calib)
            rec.row("onnx", "plain ORT static per-channel", d / "ort_static.onnx", base, time.perf_counter() - t0,
                    ort_run)
            t0 = time.perf_counter()
            try:
                ort_dynamic_plain(fp, d / "ort_dynamic.onnx")
                rec.row("onnx", "plain ORT dynamic", d / "ort_dynamic.onnx", base, time.perf_counter() - t0,
                        ort_run)
            except Exception as e:  # noqa: BLE001  a baseline that fails is a result, not a reason to stop
                # (ORT's dynamic quantizer's shape inference rejects the exported EfficientNet graph)
                table.add(case.name, "onnx", "plain ORT dynamic", f"failed: {type(e).__name__}", *[""] * 5)
            bases["onnx"] = (base, ort_run)
            if case.kind != "embedding":
                edgeq_onnx(case, d, base, rec)
        if "pte" in formats:
            pte_float(model, example, d / "fp32.pte")
            _, fl = pte_run(d / "fp32.pte", case.eval)
            base = (d.joinpath("fp32.pte").stat().st_size, fl)
            rec.row("pte", "float (XNNPACK)", d / "fp32.pte", base, 0, pte_run)
            t0 = time.perf_counter()
            pte_build(model, example, case.calib, d / "pt2e_static.pte", "static", stock_clamps=True)
            rec.row("pte", "plain PT2E + XNNPACK static", d / "pt2e_static.pte", base, time.perf_counter() - t0,
                    pte_run)
            bases["pte"] = (base, pte_run)
            if case.kind != "embedding":
                edgeq_pte(case, d, base, rec)
        if case.kind == "embedding":
            edgeq_export_rows(case, d, bases, rec)
    return table


def outlier_config(case: Case) -> Any:
    """CNNs: without SmoothQuant — on EfficientNet-Lite0 it only touches the classifier, where its explicit
    ``x * 1/s`` becomes one more per-tensor INT8 tensor (ONNX top-1 agreement 92 % -> 90 %, cosine 0.9967 ->
    0.9945 with it)."""
    from edgeq.outliers import OutlierConfig

    return OutlierConfig(smoothquant=None) if case.kind == "logits" else OutlierConfig()


# The budget the encoder rows are exported with: the targets for a sentence encoder.
ENCODER_BUDGET = {"min_cosine": 0.99, "min_nn_agreement": 0.95}
ENCODER_MAX_SIZE_RATIO = 0.30
FACTORIES = {"minilm": "bench.real_models:minilm_encoder"}


def edgeq_export_rows(case: Case, d: Path, bases: dict[str, tuple[tuple[int, float], Runner]],
                      rec: Recorder) -> None:
    """The real ``edgeq export`` (API) for every requested format in one run, with the encoder budget and the
    0.30x size cap: outlier-aware preparation + the accuracy-aware search. Each shipped INT8 artifact gets a row
    (measured here like every other row, against this table's float reference); the build time is the whole
    export's, shared by the formats."""
    from edgeq.api import export_model
    from edgeq.config import SearchOptions

    np.savez(d / "calib.npz", **case.calib)
    np.savez(d / "eval.npz", **case.eval)
    t0 = time.perf_counter()
    res = export_model(FACTORIES[case.name], str(d / "calib.npz"), d / "edgeq-export", eval=str(d / "eval.npz"),
                       formats=tuple(bases), budget=dict(ENCODER_BUDGET), force=True,
                       search=SearchOptions(max_size_ratio=ENCODER_MAX_SIZE_RATIO))
    seconds = time.perf_counter() - t0
    verdict = "passed" if res.passed else "FAILED: " + "; ".join(res.failures)[:200]
    print(f"  {case.name} edgeq export ({seconds:.0f} s): {verdict}", file=sys.stderr, flush=True)
    for a in res.artifacts:
        if a.role != "candidate" or a.format not in bases:
            continue
        base, runner = bases[a.format]
        label = (a.quantization or {}).get("search", {}).get("label") or a.precision
        rec.row(a.format, f"edgeq export ({label}){'' if res.passed else ' [budget missed]'}",
                res.output / a.path, base, seconds, runner)


def edgeq_onnx(case: Case, d: Path, base: tuple[int, float], rec: Recorder) -> None:
    """Outlier-aware PTQ in torch, then: encoders -> dynamic INT8 MatMuls (per-channel weights, attention
    MatMuls float); convolution nets -> static S8S8 QDQ per-channel (the scheme x86-64 picks with VNNI)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgeq.onnx.quantize import activation_matmuls
    from edgeq.outliers import prepare_for_int8

    t0 = time.perf_counter()
    model, example = case.factory()
    example = example_arrays(example)
    model = prepare_for_int8(model, case.calib, outlier_config(case))
    fp = export_onnx(model, example, d / "edgeq_prepared.onnx")
    if case.kind == "embedding":
        quantize_dynamic(str(fp), str(d / "edgeq.onnx"), per_channel=True,
                         nodes_to_exclude=activation_matmuls(fp))
    else:
        ort_static_plain(fp, d / "edgeq.onnx", case.calib, activation_type=QuantType.QInt8)
    rec.row("onnx", "edgeq outlier-aware", d / "edgeq.onnx", base, time.perf_counter() - t0, ort_run)


def edgeq_pte(case: Case, d: Path, base: tuple[int, float], rec: Recorder) -> None:
    """Same torch model as the ONNX row; encoders -> XNNPACK dynamic per-token linear, CNNs -> static INT8."""
    from edgeq.outliers import prepare_for_int8

    t0 = time.perf_counter()
    model, example = case.factory()
    example = example_arrays(example)
    model = prepare_for_int8(model, case.calib, outlier_config(case))
    mode = "dynamic" if case.kind == "embedding" else "static"
    pte_build(model, example, case.calib, d / "edgeq.pte", mode)
    rec.row("pte", "edgeq outlier-aware", d / "edgeq.pte", base, time.perf_counter() - t0, pte_run)


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--format", action="append", default=[])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeq-real-") as tmp:
        t = run(Path(tmp), tuple(a.model) or ("minilm", "efficientnet_lite0"), tuple(a.format) or ("onnx", "pte"))
    print(t.markdown())
