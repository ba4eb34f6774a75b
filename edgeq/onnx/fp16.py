"""float32 ONNX -> float16 ONNX (for GPU delegates: Vulkan/OpenCL on Android, Metal via CoreML on iOS).

Uses ONNX Runtime's own converter (``onnxruntime.transformers.float16``), which keeps numerically fragile ops
(its ``DEFAULT_OP_BLOCK_LIST``: Resize, TopK, NonMaxSuppression, ...) in float32 and inserts Casts around them.
Model inputs/outputs stay float32 by default so callers (runners, the reference) feed the same arrays to every
artifact; the Casts at the edges are cheap.
"""

from __future__ import annotations

import collections
import contextlib
import io
from pathlib import Path

import onnx

from edgeq.errors import ArtifactError, QuantizationError
from edgeq.jsontypes import JSONObject
from edgeq.onnx.io import save_atomic


def _elem_types(model: onnx.ModelProto) -> collections.Counter[str]:
    c: collections.Counter[str] = collections.Counter()
    for init in model.graph.initializer:
        c[onnx.TensorProto.DataType.Name(init.data_type).lower()] += 1
    return c


def convert_fp16(src: Path, dst: Path, keep_io_float32: bool = True) -> JSONObject:
    """Write a float16 copy of ``src`` to ``dst`` (atomically) and return what changed.

    The returned dict has ``initializers`` (dtype counts before/after), ``casts_added``, ``blocked_op_types``
    (ops ORT's converter keeps in float32), ``bytes_before``/``bytes_after`` and ``keep_io_float32``.
    """
    from onnxruntime.transformers import float16  # heavy: onnxruntime, only where a model is quantized or run

    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as e:
        raise ArtifactError(f"cannot read ONNX model {src}: {type(e).__name__}: {str(e)[:200]}",
                            "re-export the float model") from e
    before = _elem_types(model)
    n_cast_before = sum(1 for n in model.graph.node if n.op_type == "Cast")
    present_ops = {n.op_type for n in model.graph.node}
    try:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            fp16 = float16.convert_float_to_float16(model, keep_io_types=keep_io_float32)
    except Exception as e:
        raise QuantizationError(f"fp16 conversion failed: {type(e).__name__}: {str(e)[:300]}",
                                "drop the fp16 variant (remove 'fp16-variant' from the target's passes)") from e
    save_atomic(fp16, dst)
    after = _elem_types(fp16)
    return {
        "keep_io_float32": keep_io_float32,
        "initializers": {"before": dict(before), "after": dict(after)},
        "casts_added": sum(1 for n in fp16.graph.node if n.op_type == "Cast") - n_cast_before,
        "blocked_op_types": sorted(present_ops & set(float16.DEFAULT_OP_BLOCK_LIST)),
        "bytes_before": src.stat().st_size,
        "bytes_after": dst.stat().st_size,
    }
