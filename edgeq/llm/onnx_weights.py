"""Weight passes over a built .onnx LM, in place: what onnxruntime-genai's builder cannot do itself.
``quantize_embedding`` gives an 8-bit (or HQQ) build a 4-bit embedding table; ``quantize_hqq`` quantizes a float
build's MatMuls with onnxruntime's HQQ quantizer (the builder offers only RTN and k-quant)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnx import numpy_helper

from edgeq.errors import CaptureError
from edgeq.llm.config import Variant

EMBEDDING_BLOCK = 32  # the builder's own block for a 4-bit embedding table


def quantize_embedding(path: Path, block: int, symmetric: bool = True) -> None:
    """The embedding Gather of an int8 build to 4-bit GatherBlockQuantized, in place (the rest untouched).

    The builder quantizes the table only in 4-bit builds, so an 8-bit LM kept ~28 % of its bytes in a float table
    (SmolLM2-135M: 0.53x float); with this the 8-bit body ships at ~0.3x. Same quantizer and op as the 4-bit
    builds' table (onnxruntime's MatMulNBitsQuantizer, symmetric, per block of the hidden axis)."""
    # heavy: onnxruntime's quantizer, only where a model is quantized
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(path))
    tables = {i.name for i in model.graph.initializer}
    if not any(n.op_type == "Gather" and n.input[0] in tables for n in model.graph.node):
        raise CaptureError(f"{path} has no Gather on a weight table to quantize",
                           "use embedding_bits=0 for this model")
    axes = (("Gather", 1),)
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, bits=4,
                                       op_types_to_quantize=("Gather",), quant_axes=axes)
    q = MatMulNBitsQuantizer(model, bits=4, block_size=block, is_symmetric=symmetric,
                             op_types_to_quantize=("Gather",), quant_axes=axes, algo_config=cfg)
    q.process()
    _save_in_place(q.model.model, path)


LM_HEAD = "/lm_head/MatMul"  # the builder's name for the output projection


def quantize_hqq(path: Path, v: Variant) -> None:
    """The float build's MatMuls to 4-bit MatMulNBits with onnxruntime's HQQ quantizer (half-quadratic search
    of each block's scale and zero point for the least weight error, asymmetric with float zero points; no
    calibration data), in place. ``lm_head`` in V.keep8: the output projection gets the default 8-bit quantizer
    instead (block V.group, V.symmetric), as the builder's ``last_matmul:int8``."""
    # heavy: onnxruntime's quantizer, only where a model is quantized
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(path))
    _untie_embedding(model)
    keep = [LM_HEAD] if "lm_head" in v.keep8 else []
    hqq = HQQWeightOnlyQuantConfig(block_size=v.group, bits=4, op_types_to_quantize=("MatMul",))
    q = MatMulNBitsQuantizer(model, bits=4, block_size=v.group, nodes_to_exclude=keep,
                             op_types_to_quantize=("MatMul",), algo_config=hqq)
    q.process()
    model = q.model.model
    if keep:
        q8 = MatMulNBitsQuantizer(model, bits=8, block_size=v.group, is_symmetric=v.symmetric,
                                  accuracy_level=v.accuracy_level, nodes_to_include=keep,
                                  op_types_to_quantize=("MatMul",))
        q8.process()
        model = q8.model.model
    _set_accuracy_level(model, v.accuracy_level)
    _save_in_place(model, path)


def _untie_embedding(model: onnx.ModelProto) -> None:
    """A tied model's float build gathers its embedding rows from ``Transpose(lm_head weight)``: give the Gather
    its own table, so quantizing lm_head does not keep the float weight alive for the Transpose (and the table
    can be quantized as a table)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    made = {n.output[0]: n for n in g.node if n.op_type == "Transpose" and n.input[0] in inits}
    for n in g.node:
        t = made.get(n.input[0]) if n.op_type == "Gather" else None
        if t is None:
            continue
        table = numpy_helper.from_array(numpy_helper.to_array(inits[t.input[0]]).T.copy(), t.output[0] + "_table")
        g.initializer.append(table)
        n.input[0] = table.name
        g.node.remove(t)


def _set_accuracy_level(model: onnx.ModelProto, level: int) -> None:
    """HQQ's MatMulNBits nodes carry no accuracy_level: give them V's, as the builder does for its own."""
    for n in model.graph.node:
        if n.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in n.attribute):
            n.attribute.append(onnx.helper.make_attribute("accuracy_level", level))


def _save_in_place(model: onnx.ModelProto, path: Path) -> None:
    """MODEL over PATH and its external data (written beside, then swapped in)."""
    data = path.name + ".data"
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        onnx.save_model(model, str(Path(tmp) / path.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data, size_threshold=1024)
        for name in (path.name, data):
            os.replace(Path(tmp) / name, path.parent / name)
