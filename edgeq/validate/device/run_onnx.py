#!/usr/bin/env python3
"""edgeq device-side ONNX runner: numpy + onnxruntime only, no torch, no edgeq import.

Usage: run_onnx.py MODEL.onnx INPUTS.npz OUTPUTS.npz [--next MODEL2.onnx OUTPUTS2.npz ...] [--batch N] [--warmup N]
                   [--repeats N] [--threads N]

Runs every sample of INPUTS.npz (arrays keyed by input name, first axis = samples; a ``labels`` key is
ignored), writes OUTPUTS.npz (keyed by output name) and prints one JSON line with the latency of a
single-sample run (median over --repeats after --warmup runs) and the runtime's version; ``--next`` runs more
models on the same inputs in the same process, one JSON line each, in order.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import TypedDict

import numpy as np


class RunInfo(TypedDict):
    """The JSON line this program prints (after ``EDGEQ_RESULT``)."""

    latency_ms_median: float | None
    latency_ms_all: list[float]
    samples: int
    runtime: str
    machine: str


def run(model: str, inputs: str, outputs: str, batch: int = 32, warmup: int = 2, repeats: int = 10,
        threads: int = 0) -> RunInfo:
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    with np.load(inputs, allow_pickle=False) as z:
        feeds = {i.name: z[i.name] for i in sess.get_inputs()}
    n = next(iter(feeds.values())).shape[0]
    dim0 = sess.get_inputs()[0].shape[0]
    step = batch if not isinstance(dim0, int) else max(1, dim0)
    names = [o.name for o in sess.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for start in range(0, n, step):
        res = sess.run(names, {k: v[start:start + step] for k, v in feeds.items()})
        for k, v in zip(names, res):  # noqa: B905  (device Pythons may be 3.9: no strict=)
            chunks[k].append(v)
    # numpy's stub types **kwds as if allow_pickle (a bool) were among them: the untyped view is the boundary
    savez: Callable[..., None] = np.savez
    savez(outputs, **{k: np.concatenate(v) for k, v in chunks.items()})
    single = {k: np.ascontiguousarray(v[:1]) for k, v in feeds.items()}
    for _ in range(warmup):
        sess.run(names, single)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(names, single)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "latency_ms_median": times[len(times) // 2] if times else None,
        "latency_ms_all": times,
        "samples": int(n),
        "runtime": f"onnxruntime {ort.__version__}",
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("outputs")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    # One process for all of a board's models: importing onnxruntime takes seconds on a small board.
    ap.add_argument("--next", nargs=2, action="append", default=[], metavar=("MODEL", "OUTPUTS"),
                    help="another model to run on the same inputs afterwards (one result line each, in order)")
    a = ap.parse_args(argv)
    for model, outputs in [(a.model, a.outputs), *a.next]:
        info = run(model, a.inputs, outputs, a.batch, a.warmup, a.repeats, a.threads)
        print("EDGEQ_RESULT " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
