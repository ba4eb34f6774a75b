"""Small ONNX helpers shared by the graph passes (no pass is registered here)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from edgeq.data import Dataset
from edgeq.errors import PassError
from edgeq.jsontypes import JSONObject

# Graph passes check themselves on a few real samples: a rewrite that moves outputs beyond this is reverted.
SELF_CHECK_SAMPLES = 4
SELF_CHECK_RTOL = 1e-3


class GraphPassContext(Protocol):
    """What a graph pass reads of its build state (edgeq.pipeline.state.BuildState)."""

    @property
    def calib(self) -> Dataset | None: ...

    @property
    def eval(self) -> Dataset | None: ...

    @property
    def model_path(self) -> Path | None: ...


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    c = collections.Counter(n.op_type for n in model.graph.node)
    return dict(sorted(c.items()))


def run(path: Path | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model on the CPU EP, one sample at a time (works for fixed and dynamic batch alike)."""
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    n = next(iter(feeds.values())).shape[0]
    outs: list[list[np.ndarray]] = []
    for i in range(n):
        res = sess.run(None, {k: feeds[k][i:i + 1] for k in names})
        outs.append(res)
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def sample_feeds(ctx: GraphPassContext, n: int = SELF_CHECK_SAMPLES) -> dict[str, np.ndarray] | None:
    """A few calibration (or evaluation) samples as feeds, or None if the pass runs without data."""
    ds = ctx.calib if ctx.calib is not None else ctx.eval
    if ds is None or len(ds) == 0:
        return None
    return {k: np.ascontiguousarray(v[:n]) for k, v in ds.head(n).inputs.items()}


def max_rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """max |a-b| / max(1, max |a|) over all outputs: a scale-aware closeness measure."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = max(1.0, float(np.abs(x64).max(initial=0.0)))
        worst = max(worst, float(np.abs(x64 - y64).max(initial=0.0)) / scale)
    return worst


def outputs_moved(ctx: GraphPassContext, before: Path, after: Path, details: JSONObject) -> float | None:
    """A graph pass's self-check: the max relative output change from ``before`` to ``after`` on a few
    calibration samples, recorded in ``details``. Returns the change when it exceeds the tolerance (the caller
    reverts), else ``None``. Without sample data there is nothing to run, so nothing is reverted."""
    feeds = sample_feeds(ctx)
    if feeds is None:
        return None
    diff = max_rel_diff(run(before, feeds), run(after, feeds))
    details["self_check_max_rel_diff"] = diff
    return diff if diff > SELF_CHECK_RTOL else None


def graph_path(ctx: GraphPassContext, pass_name: str) -> Path:
    """The graph a pre/post-quant pass rewrites; a pass run without one is misconfigured."""
    if ctx.model_path is None:
        raise PassError(f"{pass_name} rewrites a graph, but none was given", "it belongs to a graph stage")
    return Path(ctx.model_path)
