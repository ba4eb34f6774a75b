"""Controlled latency of two export folders (e.g. INT8-only vs ``--compress prune:0.5``) on ONNX Runtime and the
ExecuTorch runtime: one thread, single-sample, alternating blocks of 100 runs so host load hits both alike.

    python -m bench.compress_latency OUT_INT8 OUT_PRUNED
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BLOCKS, PER_BLOCK, WARMUP = 40, 100, 200


def _ort(folder: Path, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(folder / "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
    return lambda: s.run(None, feeds)


def _pte(folder: Path, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    import torch

    from edgeq.executorch.runtime import load_method

    m = load_method(folder / "model.int8.pte")
    args = [torch.from_numpy(v.copy()).contiguous() for v in feeds.values()]
    return lambda: m.execute(args)


def compare(a: Path, b: Path) -> list[str]:
    with np.load(a / "validation/inputs.npz") as z:
        feeds = {k: z[k][:1].copy() for k in z.files if k != "labels"}
    lines = []
    for kind, make in (("onnxruntime", _ort), ("executorch", _pte)):
        fa, fb = make(a, feeds), make(b, feeds)
        ta: list[float] = []
        tb: list[float] = []
        for f in (fa, fb):
            for _ in range(WARMUP):
                f()
        for blk in range(BLOCKS):
            order = ((fa, ta), (fb, tb)) if blk % 2 == 0 else ((fb, tb), (fa, ta))
            for f, acc in order:
                for _ in range(PER_BLOCK):
                    t0 = time.perf_counter()
                    f()
                    acc.append(time.perf_counter() - t0)
        ma, mb = float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3
        lines.append(f"{kind}: {a.name} {ma:.4f} ms, {b.name} {mb:.4f} ms, speed-up {ma / mb:.2f}x "
                     f"({BLOCKS * PER_BLOCK} runs each, interleaved)")
    return lines


if __name__ == "__main__":
    print("\n".join(compare(Path(sys.argv[1]), Path(sys.argv[2]))))
