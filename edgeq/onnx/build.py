"""The one ONNX INT8 build path: what a quantization recipe turns into, whoever asks for it.

The export's first model, every search trial and every ``edgeq sweep`` variant are built here, so a recipe gives
the same bytes from any of them (static: calibration + QDQ + bias correction of the linear convs on 8-bit
activations; dynamic: ORT's dynamic MatMul/Gemm quantization; the hybrid through ``opts.dynamic_linears``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject
from edgeq.onnx.bias_correct import correct_qdq_biases
from edgeq.onnx.dynamic import quantize_onnx_dynamic
from edgeq.onnx.quantize import quantize_onnx_static


def build_onnx_int8(prepped: Path, out: Path, calib: Dataset, opts: QuantOptions,
                    on_sample: Callable[[], None] | None = None,
                    calibration_cache: Path | None = None) -> JSONObject:
    """Quantize the pre-processed float graph ``prepped`` to ``out`` with ``opts``; returns the manifest record."""
    if opts.mode == "dynamic":
        return quantize_onnx_dynamic(prepped, out, opts)
    qinfo = quantize_onnx_static(prepped, out, calib, opts, on_sample=on_sample, calibration_cache=calibration_cache)
    qinfo["ranges"] = {"source": "calibration"}
    if opts.activation_type in ("int8", "uint8"):
        # Without it every static model of a conv net is a worse start than it needs to be (the INT8 weights'
        # rounding shifts each output channel's mean; the correction puts it back from the calibration data).
        qinfo["bias_correction"] = correct_qdq_biases(prepped, out, calib)
    return qinfo
