"""What the ONNX search's ladder is chosen from: whether a graph is linear-dominated (its dynamic and
mixed-precision moves then come first), and the node ranking the sensitivity moves use. The moves themselves are
data, one file each: :mod:`edgeq.search.onnx_moves`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import onnx

from edgeq.config import SearchOptions
from edgeq.data import Dataset
from edgeq.search.sensitivity import NodeSensitivity, onnx_sensitivity


def linear_dominated(path: Path) -> bool:
    """True when MatMul/Gemm weights outnumber convolution weights (a transformer, an MLP): the outliers then
    sit in the linears' activations, and per-run (dynamic) activation scales plus kept-float linears are the
    moves with the largest expected gain."""
    model = onnx.load(str(path), load_external_data=False)
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    lin = sum(sizes.get(i, 0) for n in model.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input[1:2])
    conv = sum(sizes.get(i, 0) for n in model.graph.node if n.op_type == "Conv" for i in n.input[1:2])
    return bool(lin > 0 and lin >= conv)


def safe_sensitivity(prepped: Path, qdq: Path, calib: Dataset, options: SearchOptions) -> list[NodeSensitivity]:
    try:
        return onnx_sensitivity(prepped, qdq, calib, max_samples=options.sensitivity_samples)
    except Exception as e:  # noqa: BLE001  the debugger is best-effort: without it the ladder skips its stage
        logging.getLogger(__name__).warning("ONNX sensitivity analysis failed (%s: %s); the search skips its "
                                            "sensitivity stage", type(e).__name__, str(e)[:300])
        return []
