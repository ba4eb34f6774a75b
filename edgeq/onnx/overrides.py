"""ORT ``TensorQuantOverrides`` that pin or widen the quantization of named tensors (QAT ranges, 16-bit nodes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import onnx

from edgeq.config import QuantOptions

if TYPE_CHECKING:
    from onnxruntime.quantization import QuantType


class TensorOverride(TypedDict, total=False):
    """One entry of ORT's ``TensorQuantOverrides`` for a tensor (ORT reads numpy scalars and its own enum)."""

    quant_type: QuantType
    scale: np.ndarray
    zero_point: np.ndarray


TensorOverrides = dict[str, list[TensorOverride]]  # tensor name -> its overrides


def fixed_range_overrides(src: Path, ranges: dict[str, tuple[float, int]]) -> TensorOverrides:
    """ORT ``TensorQuantOverrides`` pinning scale and zero point of every named tensor the ONNX graph has.

    Names are torch.export FX node names; the dynamo ONNX exporter names a node's output after its FX node, so
    the shared ones (``relu``, ``linear_1``, the inputs) match. Tensors the ONNX graph lacks (e.g. the conv
    output ahead of a BatchNorm the exporter folded) have no ONNX counterpart and are skipped; ORT calibrates
    the rest.
    """
    if not ranges:
        return {}
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import QuantType

    model = onnx.load(str(src), load_external_data=False)
    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    return {name: [{"quant_type": QuantType.QInt8, "scale": np.array(scale, dtype=np.float32),
                    "zero_point": np.array(zp, dtype=np.int8)}]
            for name, (scale, zp) in ranges.items() if name in names}


def int16_overrides(src: Path, opts: QuantOptions) -> TensorOverrides:
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization import QuantType

    qtype = QuantType.QUInt16 if opts.activation_type in ("uint8", "uint16") else QuantType.QInt16
    wanted = set(opts.int16_activation_nodes)
    model = onnx.load(str(src), load_external_data=False)
    return {o: [{"quant_type": qtype}] for n in model.graph.node if n.name in wanted for o in n.output if o}
