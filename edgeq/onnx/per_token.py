"""Per-token dynamic INT8 linear layers for ONNX: each row (token) of a linear layer's input gets its own scale,
computed on every run, as ExecuTorch's ``8da8w`` / torchao's ``Int8DynamicActivationInt8WeightConfig`` do.

ONNX Runtime's own dynamic quantization (``DynamicQuantizeMatMul``) computes **one** scale per input tensor. In a
transformer encoder a few tokens (``[CLS]``, separators, padding) carry activations tens of times larger than the
rest, so one scale for the whole ``[batch, tokens, features]`` tensor leaves the ordinary tokens a handful of
levels: on a 12-layer relative-position sentence encoder the ONNX dynamic model reached cosine 0.938 where the
``.pte`` per-token one reached 0.998, from the same graph.

Each ``MatMul`` whose second input is a 2-D float initializer ``W[K, N]`` becomes, with standard ONNX operators only
(so any ONNX Runtime, including the mobile builds, runs it)::

    s   = max(ReduceMax(|X|, axis=-1, keepdims) / 127, tiny)      # [..., T, 1], one scale per token
    Xq  = Cast<uint8>(Round(X / s) + 128)                          # symmetric INT8, stored +128 (zero point 128)
    Y   = Cast<float>(MatMulInteger(Xq, Wq, 128)) * s * w_scale   # Wq: INT8 per output channel, w_scale [N]

``MatMulInteger`` with a uint8 input and an int8 weight is ONNX Runtime's fast integer GEMM (the u8 x s8 kernels of
x86 VNNI / AVX2 and ARM ``udot``/``sdot``); the uint8 storage with zero point 128 holds exactly the symmetric INT8
values. The bias ``Add`` that follows a linear layer stays float. Attention's ``MatMul`` nodes (two activation
inputs) are left float.

Measured (all-MiniLM-L6-v2 and the held-out all-mpnet-base-v2: docs/explanation/outliers.md) it is a little slower
than ORT's fused ``DynamicQuantizeMatMul`` (the scale is computed by plain operators) and still far faster than
float.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.config import QuantOptions
from edgeq.errors import QuantizationError
from edgeq.jsontypes import JSONObject
from edgeq.onnx.quantize import quiet_stdout

PER_TOKEN_TOOL = "edgeq.onnx.per_token (MatMulInteger) + onnxruntime.quantization.quantize_dynamic (Gather)"
# Below this a row is all zeros (padding): its scale is clamped so Round(X / s) stays finite.
_TINY_SCALE = 1e-8


def weight_matmuls(model: onnx.ModelProto) -> list[int]:
    """The linear layers: positions of the ``MatMul`` nodes whose second input is a 2-D float initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    return [i for i, n in enumerate(model.graph.node) if n.op_type == "MatMul" and n.input[1] in inits
            and len(inits[n.input[1]].dims) == 2 and inits[n.input[1]].data_type == TensorProto.FLOAT]


def quantize_weight(w: np.ndarray, per_channel: bool, reduce_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 ``W[K, N]``: per output channel (column) or per tensor; returns (int8 weight, scale[N]).
    ``reduce_range``: 7-bit weights (x86 without VNNI: its u8 x s8 kernels saturate 16-bit pair sums)."""
    qmax = 63.0 if reduce_range else 127.0
    amax = np.abs(w).max(axis=0) if per_channel else np.full(w.shape[1], np.abs(w).max())
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
    return q, scale


def _reduce_max(p: str, opset: int) -> onnx.NodeProto:
    """``ReduceMax`` over the last axis, kept: the axes are an input from opset 18 on, an attribute before."""
    if opset >= 18:
        return helper.make_node("ReduceMax", [f"{p}_abs", f"{p}_axis"], [f"{p}_amax"], name=f"{p}_amax", keepdims=1)
    return helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_amax"], name=f"{p}_amax", keepdims=1, axes=[-1])


def _rewrite(n: onnx.NodeProto, weight: np.ndarray, grid: tuple[bool, bool],
             opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers that replace one linear ``MatMul`` ``n`` (``grid``: per_channel, reduce_range)."""
    p = f"{n.name or n.output[0]}_pt"
    q, wscale = quantize_weight(weight, *grid)
    inits = [numpy_helper.from_array(q, f"{p}_w_int8"), numpy_helper.from_array(wscale, f"{p}_w_scale"),
             *([numpy_helper.from_array(np.array([-1], np.int64), f"{p}_axis")] if opset >= 18 else []),
             numpy_helper.from_array(np.array(127.0, np.float32), f"{p}_127"),
             numpy_helper.from_array(np.array(_TINY_SCALE, np.float32), f"{p}_tiny"),
             numpy_helper.from_array(np.array(128.0, np.float32), f"{p}_128"),
             numpy_helper.from_array(np.array(128, np.uint8), f"{p}_zp")]
    x, y = n.input[0], n.output[0]
    nodes = [
        helper.make_node("Abs", [x], [f"{p}_abs"], name=f"{p}_abs"),
        _reduce_max(p, opset),
        helper.make_node("Div", [f"{p}_amax", f"{p}_127"], [f"{p}_s0"], name=f"{p}_s0"),
        helper.make_node("Max", [f"{p}_s0", f"{p}_tiny"], [f"{p}_s"], name=f"{p}_s"),
        helper.make_node("Div", [x, f"{p}_s"], [f"{p}_xs"], name=f"{p}_xs"),
        helper.make_node("Round", [f"{p}_xs"], [f"{p}_xr"], name=f"{p}_xr"),
        # int8 + 128 as uint8 with zero point 128: the same integers, on ORT's fast u8 x s8 GEMM
        helper.make_node("Add", [f"{p}_xr", f"{p}_128"], [f"{p}_xu"], name=f"{p}_xu"),
        helper.make_node("Cast", [f"{p}_xu"], [f"{p}_xq"], name=f"{p}_xq", to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", [f"{p}_xq", f"{p}_w_int8", f"{p}_zp"], [f"{p}_acc"], name=f"{p}_mmi"),
        helper.make_node("Cast", [f"{p}_acc"], [f"{p}_accf"], name=f"{p}_accf", to=TensorProto.FLOAT),
        # the token's scale first, then the channel's: ORT's MatMulIntegerToFloat fusion matches Cast -> Mul whose
        # other input is a Mul of two scales and reads that first scale as ONE number, losing the per-token scales
        helper.make_node("Mul", [f"{p}_accf", f"{p}_s"], [f"{p}_ys"], name=f"{p}_ys"),
        helper.make_node("Mul", [f"{p}_ys", f"{p}_w_scale"], [y], name=f"{p}_y"),
    ]
    return nodes, inits


def per_token_linears(model: onnx.ModelProto, per_channel: bool = True, exclude: frozenset[str] = frozenset(),
                      reduce_range: bool = False) -> list[str]:
    """Rewrite every linear ``MatMul`` (but ``exclude``'s node names) as per-token dynamic INT8, in place; drops
    the float weights no other node reads. Returns the rewritten nodes' names."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    targets = {i for i in weight_matmuls(model) if g.node[i].name not in exclude}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    done: list[str] = []
    for i, n in enumerate(g.node):
        if i not in targets:
            nodes.append(n)
            continue
        rewritten, extra = _rewrite(n, numpy_helper.to_array(inits[n.input[1]]), (per_channel, reduce_range), opset)
        nodes += rewritten
        new_inits += extra
        done.append(n.name)
    del g.node[:]
    g.node.extend(nodes)
    read = {i for n in nodes for i in n.input} | {o.name for o in g.output}
    kept = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    return done


def quantize_onnx_per_token(src: Path, dst: Path, opts: QuantOptions) -> JSONObject:
    """Per-token dynamic INT8: the linear layers rewritten here (:func:`per_token_linears`, ``opts``' node
    exclusions kept float), then ONNX Runtime's dynamic quantizer on the embedding tables only (``Gather``: INT8
    weights, the same as the per-tensor dynamic model's)."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    per_channel = opts.per_channel is not False
    done = per_token_linears(model, per_channel, frozenset(opts.nodes_to_exclude), bool(opts.reduce_range))
    if not done:
        raise QuantizationError(f"{src.name}: no linear layer (MatMul with a 2-D weight) for per-token INT8",
                                "use the static scheme, or --dynamic without --per-token")
    gathers = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name not in opts.nodes_to_exclude]
    with tempfile.TemporaryDirectory(prefix="edgeq-per-token-") as tmp:
        linears = Path(tmp, "linears.onnx")
        onnx.save(model, str(linears))
        if not gathers:
            shutil.copyfile(linears, dst)
        else:
            try:
                with quiet_stdout():
                    quantize_dynamic(str(linears), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
                                     op_types_to_quantize=["Gather"], nodes_to_quantize=gathers)
            except Exception as e:
                raise QuantizationError(f"onnxruntime dynamic quantization of the embeddings failed: "
                                        f"{type(e).__name__}: {str(e)[:300]}", "use --dynamic without --per-token") from e
    return {"method": "dynamic", "format": "QOperator", "calibration": None, "calibration_samples": 0,
            "per_channel": per_channel, "activation_type": "int8 (dynamic, per token)", "weight_type": "int8",
            "reduce_range": bool(opts.reduce_range), "per_token_linears": done, "nodes_excluded": list(opts.nodes_to_exclude),
            "op_types_excluded": list(opts.op_types_to_exclude),
            "per_token": True, "tool": PER_TOKEN_TOOL}
