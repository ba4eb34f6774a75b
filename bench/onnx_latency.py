"""Paired host latency of ONNX models against a float one: ``python -m bench.onnx_latency FLOAT.onnx INT8.onnx ...``

The measurement edgeq's validation records (``edgeq.validate.latency``): one intra-op thread, batch 1 (the first
sample of ``--inputs``, or zeros of the model's input shapes), models interleaved round by round, medians; the
ratio is the median of per-round ratios to the first model. ``--repeat N`` runs the whole measurement N times
and prints each, so the spread on a shared host is visible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgeq.validate.latency import PairedTiming, paired_onnx_latency


def zeros_like_inputs(path: Path) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    return {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=types.get(i.type, np.float32))
            for i in sess.get_inputs()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("float_model", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--inputs", type=Path, help=".npz keyed by input name (first sample used)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    if a.inputs:
        with np.load(a.inputs, allow_pickle=False) as z:
            inputs = {k: z[k] for k in z.files if k != "labels"}
    else:
        inputs = zeros_like_inputs(a.float_model)
    timing = PairedTiming(max_rounds=a.rounds, budget_seconds=1e9)
    for rep in range(a.repeat):
        res = paired_onnx_latency(a.float_model, a.models, inputs, timing)
        for path, r in res.items():
            print(f"[{rep + 1}] {path}: {r['latency_ms']:.2f} ms  ratio to float {r['ratio_to_float']:.3f}  "
                  f"({r['rounds']} rounds x {r['runs_per_round']} runs, {r['threads']} thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
