"""A float16 variant of the float model for targets with a GPU delegate (Android GPU, Apple Metal/ANE).

Mobile GPUs compute in fp16 natively and the INT8 QDQ model gains nothing there, so a GPU path wants fp16
weights: half the float size, no calibration. ONNX Runtime's converter keeps fragile ops in float32 and the
model I/O stays float32 (same feeds as every other artifact). The variant is a ``candidate``: it is
validated against the float reference like the INT8 model. If the fixed-shapes pass ran, the same static
shapes are applied so the GPU/NNAPI/CoreML path sees the graph the INT8 model has.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from edgeq.manifest import Artifact
from edgeq.onnx.fp16 import convert_fp16
from edgeq.onnx.io import save_atomic
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState
from edgeq.stages.fixed_shapes import apply_fixed_shapes

NAME = "fp16-variant"
FP16_NAME = "model.fp16.onnx"


@register_stage(NAME, StageKind.EMITTER, "artifact", formats=("onnx",), applies_to=lambda t: bool(t.gpu_delegate),
                description="float16 copy of the float model for the target's GPU delegate (validated as a candidate)",
                declares=Declares(reads=("artifacts", "fixed_shapes"), writes=("artifacts",)))
def fp16_variant(ctx: BuildState) -> StageResult:
    base = next((a for a in ctx.artifacts if a.format == "onnx" and a.precision == "fp32"), None)
    if base is None:
        return StageResult(NAME, changed=False, summary="no float ONNX artifact to convert")
    dst = ctx.workdir / FP16_NAME
    src = ctx.workdir / base.path
    plan = ctx.fixed_shapes
    with tempfile.TemporaryDirectory(prefix="edgeq-fp16-") as tmp:
        if plan:
            # Fix the float graph first: ORT's converter appends its Cast nodes out of topological order,
            # which the shape fixer's checker rejects.

            fixed = Path(tmp) / "model.fixed.onnx"
            save_atomic(apply_fixed_shapes(onnx.load(str(src)), plan), fixed)
            src = fixed
        info = convert_fp16(src, dst, keep_io_float32=True)
    bytes_before = (ctx.workdir / base.path).stat().st_size
    info["bytes_before"] = bytes_before
    if plan:
        info["fixed_shapes"] = plan
    info["gpu_delegate"] = ctx.target.gpu_delegate
    art = Artifact(name="onnx-fp16", path=FP16_NAME, format="onnx", precision="fp16", role="candidate",
                   details={"fp16": info, "derived_from": base.name}).refresh(ctx.workdir)
    return StageResult(NAME, changed=True, state=ctx.updated(artifacts=(*ctx.artifacts, art)), details=info,
                      summary=f"{FP16_NAME}: {bytes_before / 1024:.1f} KB -> {art.bytes / 1024:.1f} KB "
                              f"for the {ctx.target.gpu_delegate} delegate ({info['casts_added']} Cast nodes at the "
                              "float32 edges)")
