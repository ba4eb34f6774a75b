"""Per-node latency of an ONNX model on the host, from onnxruntime's own profiler
(``SessionOptions.enable_profiling``), and the float nodes a quantized model runs between Q/DQ pairs.

One intra-op thread, so the node events are sequential and sum to the run (``model_run``). The graph that is
analysed is the one onnxruntime executes (``optimized_model_filepath``), after its QDQ fusions: a node left
there in float with a DequantizeLinear feeding it or a QuantizeLinear reading it runs in float with a
conversion round trip around it, which is the slowdown a QDQ model is supposed to avoid.
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from edgeq.explain.profile import OpTime, Profile, mean_per_run, overhead_row, per_run_coverage, sorted_ops
from edgeq.jsontypes import JSONObject, get_float, get_object_or_none, get_str, objects

# Integer kernels (ORT's fused QDQ forms and the dynamic-quantization ops) and graph plumbing that costs no math.
_INTEGER_PREFIXES = ("QLinear", "QGemm", "QAttention", "DynamicQuantize", "MatMulInteger", "ConvInteger",
                     "MatMulNBits", "NhwcMaxPool", "QuickGelu")
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_PLUMBING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant")


@dataclass(frozen=True)
class UnfusedNode:
    """A float node onnxruntime runs between a DequantizeLinear and a QuantizeLinear it did not fuse."""

    node: str
    op: str
    dequantized_input: bool
    quantized_output: bool
    ms: float | None = None  # its mean time per run in the profile (None: the profiler saw no event for it)


def profile_onnx(path: Path, sample: dict[str, np.ndarray], artifact: str, runs: int = 10,
                 warmup: int = 2) -> tuple[Profile, list[UnfusedNode]]:
    """(per-node profile, float nodes between Q/DQ) of one ONNX / ORT-format model on one sample."""
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    with tempfile.TemporaryDirectory(prefix="edgeq-prof-") as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        optimized = Path(tmp) / "optimized.onnx"
        if path.suffix == ".onnx":  # an .ort file is already the optimized graph and cannot be re-serialized
            opts.optimized_model_filepath = str(optimized)
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.ascontiguousarray(sample[i.name]) for i in sess.get_inputs()}
        wall = []
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            if i >= warmup:
                wall.append((time.perf_counter() - t0) * 1000.0)
        events = objects(json.loads(Path(sess.end_profiling()).read_text()), "onnxruntime profile")
        unfused = unfused_float_nodes(optimized) if optimized.is_file() else []
    prof = _from_events(events, artifact, runs, warmup, wall)
    times = {o.name: o.ms for o in prof.ops}
    return prof, [replace(u, ms=times.get(u.node)) for u in unfused]


def _from_events(events: list[JSONObject], artifact: str, runs: int, warmup: int,
                 wall: list[float]) -> Profile:
    """Node events of the timed runs (after the warm-up ones), matched to their run by timestamp."""
    windows = [(get_float(e, "ts"), get_float(e, "ts") + get_float(e, "dur"), get_float(e, "dur"))
               for e in events if e.get("name") == "model_run"]
    timed = windows[warmup:warmup + runs]
    samples: dict[str, list[float]] = collections.defaultdict(list)
    kinds: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if not any(lo <= get_float(e, "ts") <= hi for lo, hi, _ in timed):
            continue
        node = get_str(e, "name").removesuffix("_kernel_time")
        args = get_object_or_none(e, "args") or {}
        kinds[node] = (str(args.get("op_name", "?")), str(args.get("provider", "?")).removesuffix("ExecutionProvider"))
        samples[node].append(get_float(e, "dur") / 1000.0)  # µs -> ms
    per_run = mean_per_run(samples, len(timed) or 1)
    ops = [OpTime(n, kinds[n][0], kinds[n][1], ms) for n, ms in per_run.items()]
    run_ms = sum(d for _, _, d in timed) / 1000.0 / (len(timed) or 1)
    ops += overhead_row(run_ms, sum(per_run.values()), "onnxruntime (between nodes)")
    return Profile(artifact, "onnx", "onnxruntime profiler (1 intra-op thread)", len(timed), warmup,
                   sum(wall) / len(wall) if wall else 0.0, run_ms, sorted_ops(ops),
                   coverage=per_run_coverage([d / 1000.0 for _, _, d in timed], wall))


def _is_float_compute(op: str) -> bool:
    return not (op in _QDQ or op in _PLUMBING or op.startswith(_INTEGER_PREFIXES))


def unfused_float_nodes(optimized: Path) -> list[UnfusedNode]:
    """Float nodes the runtime executes between a DequantizeLinear and a QuantizeLinear, in graph order."""
    graph = onnx.load(str(optimized), load_external_data=False).graph
    if not any(n.op_type == "QuantizeLinear" for n in graph.node):
        return []  # not a QDQ model (float or dynamic INT8): nothing was meant to be fused
    producer = {o: n.op_type for n in graph.node for o in n.output}
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n.op_type)
    out = []
    for n in graph.node:
        if not _is_float_compute(n.op_type):
            continue
        dq_in = any(producer.get(i) == "DequantizeLinear" for i in n.input)
        q_out = any("QuantizeLinear" in consumers.get(o, []) for o in n.output)
        if dq_in or q_out:
            out.append(UnfusedNode(n.name, n.op_type, dq_in, q_out))
    return out
