"""Empirical bias correction of a static QDQ model's linear convolutions, against the float model it came from.

Per-tensor INT8 activations shift the mean of every convolution's output a little (rounding of the inputs is not
zero-mean per channel once the grid is coarse next to the channel's values), and through a residual stream the
shifts add up. For each Conv whose output is *linear* (not clamped by a ReLU / ReLU6 the quantizer folded into the
output's QuantizeLinear — e.g. the projection convs of MobileNetV2 / EfficientNet blocks that write the residual
stream), this subtracts the per-channel mean difference between the QDQ model's and the float model's output on
the calibration inputs from the conv's INT32 bias (Nagel et al. 2019, "empirical" variant). Sequential, in graph
order: each conv is measured with the corrections upstream of it already applied, so a shift is corrected once,
where it arises (correcting all convs from one measurement counts upstream shifts again at every later conv).
Only bias integers change: scales, zero points and the graph are untouched, so ORT fuses exactly as before.
Clamped convs are left alone: their output mean after the clamp is not linear in the bias.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    from onnxruntime import InferenceSession


@dataclass(frozen=True)
class QdqBiasCorrectionConfig:
    version: int = 1
    max_samples: int = 64  # calibration inputs whose outputs are averaged
    batch: int = 16


def _session(model: onnx.ModelProto) -> InferenceSession:
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # No graph optimization: the Conv of a QDQ group must run as the float Conv it is in the file, so its output
    # tensor exists (a fused QLinearConv has no float output to read).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _upstream(model: onnx.ModelProto, names: list[str]) -> list[onnx.NodeProto]:
    """The nodes NAMES depend on, in graph order: ORT runs every node of a graph whatever the fetches, so the
    measurement of an early conv would otherwise pay for the whole network."""
    nodes = list(model.graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    needed: set[int] = set()
    stack = [producer[n] for n in names if n in producer]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(producer[t] for t in nodes[i].input if t in producer)
    return [nodes[i] for i in sorted(needed)]


def _channel_means(model: onnx.ModelProto, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = _upstream(m, names)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.output[:]
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    sess = _session(m)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feed in feeds:
        outs = sess.run(names, feed)
        for n, y in zip(names, outs, strict=True):  # each tensor has its own spatial size
            axes = tuple(i for i in range(y.ndim) if i != 1)
            sums[n] = sums.get(n, 0.0) + y.astype(np.float64).sum(axis=axes)
            counts[n] = counts.get(n, 0) + y.size // y.shape[1]
    return {n: s / counts[n] for n, s in sums.items()}


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    return int(dims[0].dim_value) if dims and dims[0].dim_value > 0 else None


def linear_convs(qdq: onnx.ModelProto, float_model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(conv output, bias INT32 initializer, bias scale initializer) for each Conv of ``qdq`` in graph order whose
    output the float model also has as a plain Conv output (so it is not a folded clamp's output)."""
    inits = {t.name for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    float_producer = {o: n.op_type for n in float_model.graph.node for o in n.output}
    out = []
    for n in qdq.graph.node:
        if n.op_type != "Conv" or len(n.input) < 3 or float_producer.get(n.output[0]) != "Conv":
            continue
        dq = producer.get(n.input[2])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
            continue
        out.append((n.output[0], dq.input[0], dq.input[1]))
    return out


def correct_qdq_biases(float_path: Path, qdq_path: Path, calib: Dataset,
                       config: QdqBiasCorrectionConfig = QdqBiasCorrectionConfig()) -> JSONObject:
    """Rewrite ``qdq_path`` in place with corrected conv biases; returns the manifest record."""
    t0 = time.perf_counter()
    record: JSONObject = {"method": "sequential empirical bias correction (linear convs)",
                          "config": dict(config.__dict__), "convs": 0}
    graph_only = onnx.load(str(qdq_path), load_external_data=False)
    if not any(n.op_type == "Conv" for n in graph_only.graph.node):  # e.g. transformers: nothing to load
        return {**record, "seconds": round(time.perf_counter() - t0, 2)}
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph_only.graph.initializer):
        # Re-saving would inline > 2 GB of weights; convolution nets of that size are not what this is for.
        return {**record, "skipped": "weights in external data", "seconds": round(time.perf_counter() - t0, 2)}
    qdq = graph_only  # no external data (checked above): the weights are already loaded
    float_model = onnx.load(str(float_path))
    convs = linear_convs(qdq, float_model)
    record["convs"] = len(convs)
    if not convs:
        return {**record, "seconds": round(time.perf_counter() - t0, 2)}
    data = calib.head(config.max_samples)
    fixed = _fixed_batch(qdq)
    batch = fixed or config.batch  # a graph exported with a static batch takes exactly that many
    feeds = [{k: np.ascontiguousarray(v[i:i + batch]) for k, v in data.inputs.items()}
             for i in range(0, len(data) - len(data) % batch if fixed else len(data), batch)]
    reference = _channel_means(float_model, [c[0] for c in convs], feeds)
    inits = {t.name: t for t in qdq.graph.initializer}
    shifts = []
    for out, bias_name, scale_name in convs:
        got = _channel_means(qdq, [out], feeds)[out]
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float64)
        bias = numpy_helper.to_array(inits[bias_name]).astype(np.int64)
        step = np.round((got - reference[out]) / scale).astype(np.int64)
        new = np.clip(bias - step, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        inits[bias_name].CopyFrom(numpy_helper.from_array(new, bias_name))
        shifts.append(float(np.abs(got - reference[out]).mean()))
    onnx.save(qdq, str(qdq_path))
    return {**record, "samples": len(data), "mean_abs_shift": float(np.mean(shifts)),
            "max_abs_shift": float(np.max(shifts)), "seconds": round(time.perf_counter() - t0, 2)}
