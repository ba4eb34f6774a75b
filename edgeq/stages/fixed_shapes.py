"""Make every dynamic input dimension fixed, for accelerators that need static shapes (NNAPI, CoreML).

Uses ONNX Runtime's ``make_dynamic_shape_fixed`` logic (``onnxruntime.tools.onnx_model_utils``:
``make_input_shape_fixed`` + ``fix_output_shapes``). Batch becomes 1 (on-device inference is one request at a
time); other dynamic dims take the size seen in the calibration data. NNAPI refuses any node with a dynamic
input, and CoreML runs dynamic shapes slowly, so without this ORT Mobile leaves the whole graph on the CPU.

Which artifacts are fixed: the pass runs at ``pre_quant``, so the quantized model — the one an app ships — is
built from the fixed graph and is fixed too. The float baseline ``model.fp32.onnx`` is the plain export and
stays dynamic on purpose: it is the reference for validation and a starting point for other targets. The
fp16 variant applies the same fix (recorded in ``BuildState.fixed_shapes``), as it is shipped to GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from edgeq.jsontypes import JSONObject
from edgeq.onnx.graph_util import graph_path, outputs_moved
from edgeq.onnx.io import save_atomic
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState
from edgeq.targetspec import OnnxScheme, Target

if TYPE_CHECKING:
    import onnx

NAME = "fixed-shapes"
STATIC_SHAPE_EPS = ("NNAPI", "CoreML")


def needs_static_shapes(target: Target) -> bool:
    return any(ep in STATIC_SHAPE_EPS for ep in target.spec(OnnxScheme).execution_providers)


def input_shapes(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    out: dict[str, list[int | str | None]] = {}
    init = {t.name for t in model.graph.initializer}
    for i in model.graph.input:
        if i.name in init:
            continue
        out[i.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                       for d in i.type.tensor_type.shape.dim]
    return out


def plan_fixed_shapes(model: onnx.ModelProto, sample_shapes: dict[str, tuple[int, ...]], batch: int = 1) -> dict[str, list[int]]:
    """Static shape per dynamic input: ``batch`` on axis 0, the data's size on the other dynamic axes."""
    plan: dict[str, list[int]] = {}
    for name, dims in input_shapes(model).items():
        if all(isinstance(d, int) for d in dims):
            continue
        data = sample_shapes.get(name)
        fixed = []
        for ax, d in enumerate(dims):
            if isinstance(d, int):
                fixed.append(d)
            elif ax == 0:
                fixed.append(batch)
            elif data is not None and len(data) == len(dims):
                fixed.append(int(data[ax]))
            else:
                raise ValueError(f"input {name!r} axis {ax} is dynamic ({d!r}) and no data shows its size")
        plan[name] = fixed
    return plan


def apply_fixed_shapes(model: onnx.ModelProto, plan: dict[str, list[int]]) -> onnx.ModelProto:
    """Apply a plan from :func:`plan_fixed_shapes` in place (ORT's make_dynamic_shape_fixed steps).

    ORT's ``fix_output_shapes`` uses ONNX shape inference, which knows no ``com.microsoft`` ops (fused
    transformers); then the output shapes are taken from one run of the model on zeros of the fixed shapes.
    """
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    for name, shape in plan.items():
        make_input_shape_fixed(model.graph, name, shape)
    try:
        fix_output_shapes(model)
    except Exception:  # noqa: BLE001  contrib ops: fall back to running the graph
        _fix_output_shapes_by_running(model)
    return model


def _fix_output_shapes_by_running(model: onnx.ModelProto) -> None:
    import onnxruntime as ort  # heavy: onnxruntime, only where a model is quantized or run

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        dtype = helper.tensor_dtype_to_np_dtype(next(x for x in model.graph.input if x.name == i.name)
                                                .type.tensor_type.elem_type)
        feeds[i.name] = np.zeros(i.shape, dtype=dtype)
    outs = sess.run(None, feeds)
    for o, arr in zip(model.graph.output, outs, strict=True):
        shape = o.type.tensor_type.shape
        del shape.dim[:]
        for n in arr.shape:
            shape.dim.add().dim_value = int(n)


@register_stage(NAME, StageKind.TRANSFORM, "pre_quant", formats=("onnx",), applies_to=needs_static_shapes,
                description="fix dynamic input dims (batch 1) for NNAPI/CoreML; the shipped INT8 model inherits them",
                declares=Declares(reads=("model_path", "calib", "eval"), writes=("model_path", "fixed_shapes")))
def fixed_shapes(ctx: BuildState) -> StageResult:
    src = graph_path(ctx, NAME)
    model = onnx.load(str(src))
    before = input_shapes(model)
    ds = ctx.calib if ctx.calib is not None else ctx.eval
    sample_shapes = {k: tuple(v.shape) for k, v in ds.inputs.items()} if ds is not None else {}
    plan = plan_fixed_shapes(model, sample_shapes)
    if not plan:
        return StageResult(NAME, changed=False, summary="all input shapes already static",
                          details={"inputs": before})
    apply_fixed_shapes(model, plan)
    out: Path = src.with_name(src.stem + ".fixed.onnx")
    save_atomic(model, out)
    details: JSONObject = {"inputs_before": before, "inputs_after": input_shapes(model),
                           "outputs_after": {o.name: [d.dim_value if d.HasField("dim_value") else d.dim_param
                                                      for d in o.type.tensor_type.shape.dim]
                                             for o in model.graph.output},
                           "applies_to": ["onnx-int8 (built from this graph)", "onnx-fp16 (same plan)"],
                           "not_applied_to": ["model.fp32.onnx (shipped as exported: the reference)"]}
    moved = outputs_moved(ctx, src, out, details)
    if moved is not None:
        out.unlink()
        return StageResult(NAME, changed=False, details=details,
                          summary=f"fixed shapes reverted: outputs moved by {moved:.2e}")
    txt = "; ".join(f"{k}: {before[k]} -> {v}" for k, v in plan.items())
    return StageResult(NAME, changed=True, summary=f"static input shapes {txt}", details=details,
                       state=ctx.updated(model_path=out, fixed_shapes=plan))
