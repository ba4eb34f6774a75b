"""Quantization on real pretrained models: edgeq export vs the plain one-liners, both formats, one run.

For every real model in :mod:`bench.real_models` and :mod:`bench.mpnet` (all-MiniLM-L6-v2, all-mpnet-base-v2 held
out, EfficientNet-Lite0/1, EfficientNet-Lite2 and MobileNetV2 held out) and
both formats, one table, every row measured the same way against the float PyTorch model on the same held-out
samples: cosine to float (mean / min), nearest-neighbour agreement (encoders) or top-1 agreement (classifiers),
size x float and latency x float (ratios to the float artifact of the same format; latency single-threaded,
float and quantized timed in interleaved rounds, medians), build seconds, and the verdict against the model's
budget. Rows per model and format:

- plain ORT ``quantize_static`` (QDQ, per-channel, MinMax, its default U8S8) and ``quantize_dynamic`` (its
  defaults); plain PT2E + XNNPACK static per-channel (edgeq's integer-safe XNNPACKQuantizer, the stock one crashes
  on BERT's index path, with the stock ReLU6 annotation: the clamp not fused into the conv before it);
- **edgeq export**: one real ``edgeq export MODEL --format onnx,pte`` through :func:`edgeq.api.export_model`
  with the budgets of docs/explanation/benchmarks/real-models.md (below), i.e. outlier-aware preparation + the accuracy-aware search; every INT8
  artifact it ships gets a row, and its build time is the whole export's, shared by the two formats.

A row that fails to build or run is a row with the reason, not an aborted run. Float exports are built once per
model and shared by every row. Run with ``python -m bench.real_quant`` (``--model NAME`` / ``--format onnx|pte``
narrow it) or ``python -m bench.run --only real_quant`` (part of ``make bench``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.real_models import example_arrays
from bench.table import Table

TITLE = "Quantization on real pretrained models (edgeq export vs plain ORT static / dynamic / PT2E + XNNPACK)"

# The budgets of the `edgeq export` commands in docs/explanation/benchmarks/real-models.md, unchanged per model of a kind (not tuned per model):
# a sentence encoder `--min-cosine 0.99 --min-nn-agreement 0.95`, an ImageNet CNN `--min-top1-agreement 0.92
# --max-accuracy-drop 8` (no labels: the drop is checked as top-1 disagreement), both `--max-size-ratio 0.30`.
ENCODER_BUDGET = {"min_cosine": 0.99, "min_nn_agreement": 0.95}
CNN_BUDGET = {"min_top1_agreement": 0.92, "max_accuracy_drop": 8.0}
MAX_SIZE_RATIO = 0.30
ENCODER_MAX_SIZE_RATIO = MAX_SIZE_RATIO


@dataclass(frozen=True)
class RealModel:
    """One real model of the table: its ``edgeq export`` factory, output kind, sample counts and budget."""

    name: str
    factory: str  # "module:function", as given to `edgeq export`
    kind: str  # "embedding" | "logits"
    n_calib: int
    n_eval: int
    budget: dict[str, float] = field(default_factory=dict)


# Sample counts: 64 calibration; 120 sentences / 400 crops held out (400 crops, not 150: a 0.92 top-1 gate on 150
# crops has a standard error of 0.022, i.e. +-3 crops decide it).
MODELS = {
    "minilm": RealModel("minilm", "bench.real_models:minilm_encoder", "embedding", 64, 120, ENCODER_BUDGET),
    "mpnet": RealModel("mpnet", "bench.mpnet:mpnet_encoder", "embedding", 64, 120, ENCODER_BUDGET),
    "efficientnet_lite0": RealModel("efficientnet_lite0", "bench.real_models:efficientnet_lite0", "logits", 64, 400,
                                    CNN_BUDGET),
    "efficientnet_lite1": RealModel("efficientnet_lite1", "bench.real_models:efficientnet_lite1", "logits", 64, 400,
                                    CNN_BUDGET),
    "efficientnet_lite2": RealModel("efficientnet_lite2", "bench.real_models:efficientnet_lite2", "logits", 64, 400,
                                    CNN_BUDGET),
    "mobilenet_v2": RealModel("mobilenet_v2", "bench.mobilenet:mobilenet_v2", "logits", 64, 400, CNN_BUDGET),
}
# Measured, never tuned on: no method's default or threshold may be chosen by looking at these rows.
HELD_OUT = ("efficientnet_lite2", "mobilenet_v2", "mpnet")
FACTORIES = {k: m.factory for k, m in MODELS.items()}


@dataclass
class Case:
    name: str
    factory: Callable[[], tuple[Any, dict[str, np.ndarray]]]
    calib: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    kind: str  # "embedding" | "logits"
    calib_npz: Path | None = None  # the same samples as files, for `edgeq export --calib/--eval`
    eval_npz: Path | None = None


def load_factory(spec: str) -> Callable[[], tuple[Any, dict[str, Any]]]:
    module, _, attr = spec.partition(":")
    fn: Callable[[], tuple[Any, dict[str, Any]]] = getattr(importlib.import_module(module), attr)
    return fn


def cases(names: tuple[str, ...] = tuple(MODELS), data_dir: Path | None = None) -> list[Case]:
    """The models' calibration / held-out samples, written as ``.npz`` (``bench.real_models.write_npz``, what
    the documented commands use) and read back, so the export and the baselines see the same arrays."""
    import tempfile

    from bench.common import load_npz
    from bench.real_models import write_npz

    folder = data_dir or Path(tempfile.mkdtemp(prefix="edgeq-real-data-"))
    out = []
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; have {', '.join(MODELS)}")
        m = MODELS[name]
        cp, ep = write_npz(folder, name, m.n_calib, m.n_eval)
        out.append(Case(name, load_factory(m.factory), load_npz(cp), load_npz(ep), m.kind, cp, ep))
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


def ort_static_plain(src: Path, dst: Path, calib: dict[str, np.ndarray], **kw: Any) -> Path:
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
    return dst


def ort_dynamic_plain(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(src), str(dst))
    return dst


# -- ExecuTorch ---------------------------------------------------------------------------------------------------

def pte_build(model: Any, example: dict[str, np.ndarray], calib: dict[str, np.ndarray], path: Path,
              mode: str, stock_clamps: bool = False) -> Path:
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
    return path


def pte_float(model: Any, example: dict[str, np.ndarray], path: Path) -> Path:
    import torch

    from edgeq.executorch.lower import lower_to_executorch

    args = tuple(torch.from_numpy(v) for v in example.values())
    program, _ = lower_to_executorch(torch.export.export(model, args, strict=False))
    path.write_bytes(program.buffer)
    return path


# -- one measurement for every row --------------------------------------------------------------------------

Run = Callable[[dict[str, np.ndarray]], np.ndarray]
LATENCY_SECONDS = 20.0  # both sides' rounds together, per row (edgeq.validate.latency sizes the rounds)


def ort_session(path: Path) -> Run:
    """One-thread, sequential onnxruntime session: what a batch-1 latency ratio should compare."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda row: np.asarray(sess.run(None, row)[0])


def pte_session(path: Path) -> Run:
    """The ExecuTorch runtime's ``forward``, with XNNPACK's thread pool at one thread (like the ORT rows)."""
    import torch

    from edgeq.executorch.runtime import load_method

    with contextlib.suppress(ImportError):  # private pybinding; without it the pool keeps its default size
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(1)
    method = load_method(path)

    def run(row: dict[str, np.ndarray]) -> np.ndarray:
        # fresh contiguous copies: numpy views can carry strides ExecuTorch rejects
        args = [torch.from_numpy(np.ascontiguousarray(v).copy()) for v in row.values()]
        return np.asarray(method.execute(args)[0].detach().numpy().copy())

    return run


SESSIONS: dict[str, Callable[[Path], Run]] = {"onnx": ort_session, "pte": pte_session}


def latency(float_run: Run, q_run: Run, rows: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """(float median ms, median per-round ratio quantized / float): edgeq's own paired measurement (the one in
    every manifest's ``latency_detail``), each side cycling through the held-out samples."""
    from edgeq.validate.latency import PairedTiming, paired_latency

    its = {side: itertools.cycle(rows) for side in ("float", "q")}
    res = paired_latency({"float": lambda: float_run(next(its["float"])), "q": lambda: q_run(next(its["q"]))},
                         "float", PairedTiming(budget_seconds=LATENCY_SECONDS))
    return float(res["float"]["latency_ms"]), float(res["q"]["ratio_to_float"])


# -- building the rows ---------------------------------------------------------------------------------------

@dataclass
class Built:
    """One artifact of the table, or why there is none."""

    fmt: str
    method: str
    path: Path | None
    seconds: float
    error: str | None = None
    note: str = ""  # e.g. the export's own verdict


def build(fmt: str, method: str, make: Callable[[], Path]) -> Built:
    """``make()`` timed; a failure becomes the row's reason (a baseline that fails is a result)."""
    t0 = time.perf_counter()
    print(f"  building {fmt} {method} ...", file=sys.stderr, flush=True)
    try:
        path = make()
    except Exception as e:  # noqa: BLE001  any failure of a quantizer is reported in the table, not raised
        traceback.print_exc(file=sys.stderr)
        return Built(fmt, method, None, time.perf_counter() - t0, f"{type(e).__name__}: {short(str(e))}")
    return Built(fmt, method, path, time.perf_counter() - t0)


def short(text: str, n: int = 140) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[:n - 3] + "..."


def edgeq_export(case: Case, d: Path, formats: tuple[str, ...]) -> list[Built]:
    """The real ``edgeq export`` (API) of every requested format in one run, with the model's budget and the
    0.30x size cap — what ``edgeq export FACTORY --calib .. --eval .. --format onnx,pte <budget flags>
    --max-size-ratio 0.30`` runs. Each INT8 artifact it ships is a row; the build time is the whole export's."""
    from edgeq.api import export_model
    from edgeq.config import SearchOptions

    spec = MODELS[case.name]
    t0 = time.perf_counter()
    print(f"  edgeq export {spec.factory} --format {','.join(formats)} ...", file=sys.stderr, flush=True)
    try:
        res = export_model(spec.factory, str(case.calib_npz), d / "edgeq-export", eval=str(case.eval_npz),
                           formats=formats, budget=dict(spec.budget), force=True,
                           search=SearchOptions(max_size_ratio=MAX_SIZE_RATIO))
    except Exception as e:  # noqa: BLE001  an export that raises is a failed row with its reason
        traceback.print_exc(file=sys.stderr)
        reason = f"{type(e).__name__}: {short(str(e))}"
        return [Built(f, "edgeq export", None, time.perf_counter() - t0, reason) for f in formats]
    seconds = time.perf_counter() - t0
    print(f"  edgeq export: {seconds:.0f} s, verdict {'PASS' if res.passed else 'FAIL'} {res.failures}",
          file=sys.stderr, flush=True)
    out = []
    for fmt in formats:
        arts = [a for a in res.artifacts if a.role == "candidate" and a.format == fmt
                and a.precision not in ("fp32", "fp16")]
        if not arts:
            out.append(Built(fmt, "edgeq export", None, seconds,
                             "no INT8 artifact shipped: " + short("; ".join(res.failures))))
        for a in arts:
            checks = [v.budget_check for v in a.validations]
            own = "export: PASS" if checks and all(c["passed"] for c in checks) else (
                "export: FAIL " + short("; ".join(f.split(" (")[0] for c in checks for f in c["failures"]), 100))
            label = ((a.quantization or {}).get("search") or {}).get("label")
            out.append(Built(fmt, f"**edgeq export** `{a.name}`" + (f" ({label})" if label else ""),
                             res.output / a.path, seconds, note=own))
    return out


COLUMNS = ["model", "format", "method", "cos mean", "cos min", "NN / top-1 agree", "size x float",
           "latency x float", "build s", "verdict"]


def verdict(case: Case, m: Any, size_ratio: float) -> str:
    """This row against the model's budget and the size cap, measured here (same check as ``edgeq check``)."""
    from edgeq.config import Budget
    from edgeq.validate.metrics import check_budget

    fails = list(check_budget(m, Budget(**MODELS[case.name].budget)).failures)
    if size_ratio > MAX_SIZE_RATIO:
        fails.append(f"size {size_ratio:.3f}x > {MAX_SIZE_RATIO}x")
    return "PASS" if not fails else "miss: " + "; ".join(f.split(" (")[0] for f in fails)


def measure(case: Case, ref: np.ndarray, floats: dict[str, Built], rows: list[Built], table: Table) -> None:
    """Every built row of the table, the same way: outputs on the held-out samples (one by one), metrics to the
    float PyTorch outputs, size and latency as ratios to the same format's float artifact."""
    from edgeq.validate.metrics import compare

    samples = rows_of(case.eval)
    float_runs: dict[str, tuple[Run, int]] = {}
    for b in rows:
        cells: list[Any]
        try:
            if b.path is None:
                raise RuntimeError(b.error)
            base = floats[b.fmt]
            if base.path is None:
                raise RuntimeError(f"no float {b.fmt} artifact to compare with ({base.error})")
            if b.fmt not in float_runs:
                float_runs[b.fmt] = (SESSIONS[b.fmt](base.path), base.path.stat().st_size)
            f_run, f_bytes = float_runs[b.fmt]
            q_run = SESSIONS[b.fmt](b.path)
            out = np.concatenate([q_run(r) for r in samples])
            m = compare({"output": ref}, {"output": out})
            agree = m.nn_agreement if case.kind == "embedding" else m.top1_agreement
            size = b.path.stat().st_size / f_bytes
            f_ms, lat = latency(f_run, q_run, samples)
            is_float = b is base
            cells = [f"{m.cosine_mean:.4f}", f"{m.cosine_min:.4f}", f"{agree or 0.0:.3f}", f"{size:.3f}",
                     f"1 ({f_ms:.1f} ms)" if is_float else f"{lat:.2f}", f"{b.seconds:.0f}",
                     "–" if is_float else verdict(case, m, size) + (f" ({b.note})" if b.note else "")]
        except Exception as e:  # noqa: BLE001  a row that cannot run is reported with its reason
            reason = b.error or f"{type(e).__name__}: {short(str(e))}"
            cells = ["–", "–", "–", "–", "–", f"{b.seconds:.0f}", f"FAILED: {reason}"]
        table.add(case.name, "ONNX" if b.fmt == "onnx" else "`.pte`", b.method, *cells)
        print(f"  {case.name} {b.fmt} {b.method}: {cells}", file=sys.stderr, flush=True)


def model_rows(case: Case, d: Path, formats: tuple[str, ...], table: Table) -> None:
    d.mkdir(parents=True, exist_ok=True)
    model, example_t = case.factory()
    example = example_arrays(example_t)
    ref = torch_outputs(model, case.eval)
    floats: dict[str, Built] = {}
    rows: list[Built] = []
    if "onnx" in formats:
        floats["onnx"] = fp = build("onnx", "float", lambda: export_onnx(model, example, d / "fp32.onnx"))
        rows.append(fp)
        if fp.path is not None:
            src = fp.path
            rows.append(build("onnx", "plain ORT static per-channel",
                              lambda: ort_static_plain(src, d / "ort_static.onnx", case.calib)))
            rows.append(build("onnx", "plain ORT dynamic", lambda: ort_dynamic_plain(src, d / "ort_dynamic.onnx")))
    if "pte" in formats:
        floats["pte"] = fe = build("pte", "float (XNNPACK)", lambda: pte_float(model, example, d / "fp32.pte"))
        rows.append(fe)
        rows.append(build("pte", "plain PT2E + XNNPACK static",
                          lambda: pte_build(model, example, case.calib, d / "pt2e_static.pte", "static",
                                            stock_clamps=True)))
    rows += edgeq_export(case, d, formats)
    order = {f: i for i, f in enumerate(formats)}
    measure(case, ref, floats, sorted(rows, key=lambda b: order[b.fmt]), table)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch at one thread for the float reference and the builds (the shared host; ORT/ExecuTorch sessions
    are made single-threaded where they are opened)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def run(workdir: Path, names: tuple[str, ...] = tuple(MODELS), formats: tuple[str, ...] = ("onnx", "pte")) -> Table:
    import os

    workdir.mkdir(parents=True, exist_ok=True)
    table = Table(list(COLUMNS))
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with one_thread():
        for case in cases(names, workdir / "data"):
            print(f"== {case.name}", file=sys.stderr, flush=True)
            try:
                model_rows(case, workdir / case.name, formats, table)
            except Exception as e:  # noqa: BLE001  one model that cannot even load must not hide the others
                traceback.print_exc(file=sys.stderr)
                table.add(case.name, "–", "float model", *["–"] * 6, f"FAILED: {type(e).__name__}: {short(str(e))}")
    load1 = os.getloadavg()
    table.notes.append(f"wall time {time.perf_counter() - t0:.0f} s; host load average (1/5/15 min) "
                       f"{'/'.join(f'{x:.1f}' for x in load0)} at the start, "
                       f"{'/'.join(f'{x:.1f}' for x in load1)} at the end")
    return table


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], choices=list(MODELS))
    ap.add_argument("--format", action="append", default=[], choices=["onnx", "pte"])
    ap.add_argument("--workdir", type=Path, help="keep the artifacts here (default: a temporary folder)")
    a = ap.parse_args()
    names, fmts = tuple(a.model) or tuple(MODELS), tuple(a.format) or ("onnx", "pte")
    if a.workdir is not None:
        t = run(a.workdir, names, fmts)
    else:
        with tempfile.TemporaryDirectory(prefix="edgeq-real-") as tmp:
            t = run(Path(tmp), names, fmts)
    print(t.markdown())
