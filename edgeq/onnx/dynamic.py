"""Dynamic INT8 quantization with ``onnxruntime.quantization``: weights offline, activations per run."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgeq.config import QuantOptions
from edgeq.errors import QuantizationError
from edgeq.jsontypes import JSONObject
from edgeq.onnx.per_token import quantize_onnx_per_token
from edgeq.onnx.quantize import QTYPE, op_types_to_quantize, quiet_stdout


def quantize_onnx_dynamic(src: Path, dst: Path, opts: QuantOptions) -> JSONObject:
    """Dynamic INT8: weights quantized offline, activations quantized per batch at run time (one scale per tensor,
    ONNX Runtime's ``DynamicQuantizeMatMul``; with ``opts.per_token`` one per token, edgeq.onnx.per_token)."""
    if opts.per_token:
        return quantize_onnx_per_token(src, dst, opts)
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import QuantType, quantize_dynamic

    wtype = "int8" if opts.weight_type in (None, "int8", "int16") else "uint8"
    try:
        with quiet_stdout():
            quantize_dynamic(str(src), str(dst), per_channel=bool(opts.per_channel),
                             reduce_range=bool(opts.reduce_range), weight_type=getattr(QuantType, QTYPE[wtype]),
                             nodes_to_exclude=list(opts.nodes_to_exclude) or None,
                             op_types_to_quantize=op_types_to_quantize(src, opts.op_types_to_exclude))
    except Exception as e:
        raise QuantizationError(f"onnxruntime dynamic quantization failed: {type(e).__name__}: {str(e)[:300]}") from e
    return {
        "method": "dynamic",
        "format": "QOperator",
        "calibration": None,
        "calibration_samples": 0,
        "per_channel": bool(opts.per_channel),
        "activation_type": "uint8 (dynamic)",
        "weight_type": wtype,
        "reduce_range": bool(opts.reduce_range),
        "nodes_excluded": list(opts.nodes_to_exclude),
        "op_types_excluded": list(opts.op_types_to_exclude),
        "tool": "onnxruntime.quantization.quantize_dynamic",
    }


def activation_matmuls(src: Path) -> list[str]:
    """MatMul nodes with no weight input (attention ``Q K^T`` and ``P V``).

    Dynamic INT8 quantizes both of their inputs with one per-tensor scale each, and the softmax output's range is
    set by its rare peaks; they hold no weights, so keeping them float costs no size and little time.
    """
    model = onnx.load(str(src), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in inits or i in consts for i in n.input)]
