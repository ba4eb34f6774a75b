"""Per-node quantization sensitivity of an ONNX QDQ model (ONNX-only), with ORT's ``qdq_loss_debug``.

Both models are augmented to expose every intermediate activation
(``modify_model_output_intermediate_tensors``), run on the same samples (``collect_activations``) and matched
by tensor name (``create_activation_matching``). For every quantized activation ``compute_activation_error``
gives two SQNRs: ``qdq_err`` (the Q/DQ pair on that tensor alone, inside the quantized model) and
``xmodel_err`` (the quantized model's tensor vs the float model's: the error accumulated up to there).

A node's *added* error is what it contributes beyond the error already on its inputs, as a noise-to-signal
power ratio: ``max(nsr(qdq_err), nsr(xmodel_out) - max nsr(xmodel_in))`` with ``nsr(db) = 10^(-db/10)``.
Ranking by it puts the nodes whose INT8 output destroys information (e.g. the attention-mask add, whose
range is dominated by -10000) at the top; those are the ones worth keeping in float or at 16 bits.
Weight SQNRs (``create_weight_matching`` / ``compute_weight_error``) are reported per node too.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject
from edgeq.onnx.quantize import quiet_stdout, reader_class


@dataclass(frozen=True)
class NodeSensitivity:
    node: str
    op_type: str
    tensor: str  # the node output whose quantization was measured
    qdq_sqnr_db: float  # SQNR of the Q/DQ on this tensor alone
    xmodel_sqnr_db: float  # quantized-model tensor vs float-model tensor
    input_sqnr_db: float  # worst accumulated SQNR on the node's inputs (inf for graph inputs)
    added_nsr: float  # ranking score: noise-to-signal power this node adds
    weight_sqnr_db: float | None = None

    @property
    def added_db(self) -> float:
        """The added error expressed as an SQNR (lower = worse)."""
        return _db(self.added_nsr)

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["added_db"] = self.added_db
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


def nsr(db: float) -> float:
    return 0.0 if math.isinf(db) and db > 0 else 10.0 ** (-db / 10.0)


def _db(nsr: float) -> float:
    return math.inf if nsr <= 0 else -10.0 * math.log10(nsr)


def _finite(v: float) -> float | str | None:
    if math.isnan(v):  # not measured (the .pte comparison has no per-tensor Q/DQ reading)
        return None
    return "inf" if math.isinf(v) and v > 0 else ("-inf" if math.isinf(v) else round(v, 4))


def onnx_sensitivity(float_model: Path, qdq_model: Path, data: Dataset, max_samples: int = 16) -> list[NodeSensitivity]:
    """Rank the float model's nodes by the error their quantization adds (most sensitive first).

    ``float_model`` must be the graph ``qdq_model`` was quantized from (same tensor names), i.e. the
    pre-processed float model.
    """
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        compute_signal_to_quantization_noice_ratio,
        compute_weight_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    data = data.head(max_samples)
    with tempfile.TemporaryDirectory(prefix="edgeq-sens-") as tmp, quiet_stdout():
        aug_f, aug_q = Path(tmp, "float.aug.onnx"), Path(tmp, "qdq.aug.onnx")
        modify_model_output_intermediate_tensors(str(float_model), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq_model), str(aug_q))
        float_acts = collect_activations(str(aug_f), reader_class()(data))
        qdq_acts = collect_activations(str(aug_q), reader_class()(data))
        matching = {k: v for k, v in create_activation_matching(qdq_acts, float_acts).items() if "float" in v}
        graph = onnx.load(str(float_model), load_external_data=False).graph
        _clamp_folded_activations(matching, graph, onnx.load(str(qdq_model), load_external_data=False).graph)
        act_err = compute_activation_error(matching)
        w_err = compute_weight_error(_weight_matching(float_model, qdq_model),
                                     lambda a, b: compute_signal_to_quantization_noice_ratio(a, b))

    xmodel = {t: e.get("xmodel_err", math.inf) for t, e in act_err.items()}
    producer = {o: m for m in graph.node for o in m.output}
    result = []
    for n in graph.node:
        measured = [o for o in n.output if o in act_err]
        if not measured:
            continue
        t = min(measured, key=lambda o: act_err[o]["qdq_err"])
        qdq_db, x_db = float(act_err[t]["qdq_err"]), float(xmodel.get(t, math.inf))
        ins = [float(xmodel[i]) for i in _measured_inputs(n, producer, xmodel)]
        in_db = min(ins) if ins else math.inf
        added = max(nsr(qdq_db), nsr(x_db) - nsr(in_db))
        wts = [float(w_err[i]) for i in n.input if i in w_err]
        result.append(NodeSensitivity(n.name, n.op_type, t, qdq_db, x_db, in_db, added,
                                      min(wts) if wts else None))
    result.sort(key=lambda s: -s.added_nsr)
    return result


def _measured_inputs(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], measured: Mapping[str, float]) -> list[str]:
    """The measured tensors NODE reads: an input the quantized model has no reading for (the output of a Conv
    whose Relu / Clip ORT folded into it) is replaced by its producer's inputs, so the folded pair's added error
    is the pair's, not everything accumulated since the graph input."""
    out: list[str] = []
    todo, seen = [i for i in node.input if i], set[str]()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in measured:
            out.append(t)
        elif t in producer and len(seen) < 64:
            todo.extend(i for i in producer[t].input if i)
    return out


def _clamp_folded_activations(matching: dict[str, dict[str, Sequence[np.ndarray]]], fg: onnx.GraphProto,
                              qg: onnx.GraphProto) -> None:
    """Apply the float graph's Relu / Clip to the pre-Q/DQ reading of tensors whose clamp ORT folded away.

    ORT's QDQ quantizer removes a Relu / Clip that follows a Conv and lets the Conv write the clamp's output name,
    quantized with the clamp's range: the tensor read *before* the Q/DQ pair is then the unclamped conv output,
    and its SQNR against the Q/DQ output measures the ReLU6 (0.07 dB on every EfficientNet-Lite1 Clip), not the
    quantization — which put those Clips at the top of the ranking and made their 16-bit moves useless.
    """
    consts = {t.name: float(numpy_helper.to_array(t).reshape(-1)[0]) for t in fg.initializer
              if math.prod(t.dims) == 1 and t.data_location != onnx.TensorProto.EXTERNAL}
    consts.update({n.output[0]: float(numpy_helper.to_array(a.t).reshape(-1)[0]) for n in fg.node
                   if n.op_type == "Constant" for a in n.attribute if a.name == "value" and math.prod(a.t.dims) == 1})
    qdq_producer = {o: n.op_type for n in qg.node for o in n.output}
    for n in fg.node:
        t = n.output[0] if n.output else ""
        if n.op_type not in ("Relu", "Clip") or t not in matching or qdq_producer.get(t) == n.op_type:
            continue
        lo, hi = (0.0, math.inf) if n.op_type == "Relu" else (-math.inf, math.inf)
        if n.op_type == "Clip":  # opset >= 11: optional min / max inputs
            lo_name, hi_name = (list(n.input[1:3]) + ["", ""])[:2]
            lo, hi = consts.get(lo_name, lo), consts.get(hi_name, hi)
        pre = matching[t].get("pre_qdq")
        if pre is not None:
            matching[t]["pre_qdq"] = [np.clip(a, lo, hi) for a in pre]


def _weight_matching(float_model: Path, qdq_model: Path) -> dict[str, dict[str, np.ndarray]]:
    """``create_weight_matching``'s result, dequantized in float64.

    ORT's helper subtracts the zero point in the stored integer type, which wraps around for uint8 weights with
    a non-zero zero point (it reported -22 dB for an embedding table whose true SQNR is 34 dB).
    """
    fl = {i.name: i for i in onnx.load(str(float_model)).graph.initializer}  # the weights themselves are compared
    qm = onnx.load(str(qdq_model), load_external_data=False).graph
    qi = {i.name: i for i in qm.initializer}
    out: dict[str, dict[str, np.ndarray]] = {}
    for n in qm.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in qi or len(n.input) < 2:
            continue
        name = n.input[0].removesuffix("_quantized")
        if name not in fl:
            continue
        w = numpy_helper.to_array(qi[n.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(qi[n.input[1]]).astype(np.float64)
        zp = (numpy_helper.to_array(qi[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] in qi
              else np.zeros_like(scale))
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * w.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        ref = numpy_helper.to_array(fl[name]).astype(np.float64)
        out[name] = {"float": np.atleast_1d(ref), "dequantized": np.atleast_1d((w - zp) * scale)}
    return out


def sensitivity_table(ranking: list[NodeSensitivity], top: int = 20) -> list[JSONObject]:
    """The manifest / report form: the ``top`` most sensitive nodes."""
    return [dict(rank=i + 1, **s.to_dict()) for i, s in enumerate(ranking[:top])]
