"""Apply the target profile's ONNX quantization scheme (its ``[onnx]`` table) and record why it was chosen.

The scheme is data, not code: ``activation_type``/``weight_type`` (S8S8 on ARM64 for ONNX Runtime's NEON/SDOT/I8MM
int8 GEMM kernels; U8S8 with ``reduce_range`` on x86-64 without VNNI, where pmaddubsw saturates), ``per_channel``,
``reduce_range`` and ``calibration`` come from the target TOML, with its ``reason``. Explicit user options
(CLI flags, ``edgeq.toml``, Python) win over the profile; only unset fields are filled.
"""

from __future__ import annotations

from dataclasses import replace

from edgeq.pipeline.stage import StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState

NAME = "quant-scheme"
SCHEME_FIELDS = ("activation_type", "weight_type", "per_channel", "reduce_range", "calibration")


@register_stage(NAME, StageKind.TRANSFORM, "configure", formats=("onnx",), reads=("quant",), writes=("quant",),
                description="fill the quantization options from the target's [onnx] scheme (user options win)")
def quant_scheme(ctx: BuildState) -> StageResult:
    defaults = ctx.target.quant_defaults()
    q = ctx.quant
    updates = {k: getattr(defaults, k) for k in SCHEME_FIELDS if getattr(q, k) is None}
    new_q = replace(q, **updates)
    reason = ctx.target.onnx.reason
    return StageResult(NAME, changed=bool(updates), summary=reason, state=ctx.updated(quant=new_q),
                       details={"chosen": {k: getattr(new_q, k) for k in SCHEME_FIELDS},
                                "user_overrides": sorted(set(SCHEME_FIELDS) - set(updates)), "reason": reason,
                                "source": ctx.target.path or ctx.target.name})
