"""The one ONNX INT8 build path: what a quantization recipe turns into, whoever asks for it.

The export's first model, every search trial and every ``edgeq sweep`` variant are built here, so a recipe gives
the same bytes from any of them (static: calibration + QDQ + bias correction of the linear convs on 8-bit
activations; dynamic: ORT's dynamic MatMul/Gemm quantization; the hybrid through ``opts.dynamic_linears``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.jsontypes import JSONObject
from edgeq.onnx.bias_correct import correct_qdq_biases
from edgeq.onnx.dynamic import quantize_onnx_dynamic
from edgeq.onnx.mixed import weights_to_fp16
from edgeq.onnx.quantize import quantize_onnx_static
from edgeq.recipe import Recipe


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


def build_onnx_recipe(prepped: Path, out: Path, calib: Dataset, recipe: Recipe,
                      on_sample: Callable[[], None] | None = None,
                      calibration_cache: Path | None = None) -> JSONObject:
    """Build ``recipe``: the INT8 model with its float16 layers kept float32 (:func:`build_onnx_int8`), then those
    layers' weights stored in float16 (:func:`store_float16_layers`). Returns the manifest record."""
    qinfo = build_onnx_int8(prepped, out, calib, recipe.kept_float32().to_quant_options(), on_sample=on_sample,
                            calibration_cache=calibration_cache)
    fp16 = store_float16_layers(out, recipe)
    if fp16:
        qinfo["fp16_nodes"] = fp16
    return qinfo


def store_float16_layers(path: Path, recipe: Recipe) -> list[str]:
    """The recipe's float16 layers (by node, and every node of a float16 op type) store their float32 MatMul/Gemm
    weight as float16 behind a Cast (:func:`edgeq.onnx.mixed.weights_to_fp16`), in place; returns the nodes
    changed. ONNX Runtime folds the Cast when the session loads: the layer computes in float32 from fp16-rounded
    weights, in half the bytes."""
    nodes = list(recipe.nodes("float16"))
    types = set(recipe.op_types("float16"))
    if types:
        graph = onnx.load(str(path), load_external_data=False).graph
        nodes += [n.name for n in graph.node if n.op_type in types and n.name not in nodes]
    return weights_to_fp16(path, nodes) if nodes else []
