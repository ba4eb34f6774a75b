"""Choose the ONNX quantization scheme for the target's ISA.

ARM64 (NEON, SDOT/I8MM): signed INT8 activations and weights (S8S8), symmetric per-channel weights in QDQ —
the combination ONNX Runtime's ARM64 int8 GEMM kernels are built for. x86-64 without VNNI: U8S8 with
``reduce_range`` — the pmaddubsw instruction saturates on S8S8 with 8-bit weights (ONNX Runtime docs,
"Quantize ONNX models", section on x86 saturation); with VNNI no reduction is needed.
"""

from __future__ import annotations

from dataclasses import replace

from edgeq.pipeline.stage import PassContext, PassResult, register_pass


@register_pass("quant-scheme", stage="configure", formats=("onnx",),
               description="pick S8S8/U8S8, per-channel and reduce_range for the target ISA")
def quant_scheme(ctx: PassContext) -> PassResult:
    target = ctx.target
    q = ctx.quant
    feats = set(target.cpu.features)
    if target.is_arm:
        want = dict(activation_type="int8", weight_type="int8", per_channel=True, reduce_range=False)
        kernels = "NEON" + ("/SDOT" if "asimddp" in feats else " (no dot-product)") + ("/I8MM" if "i8mm" in feats else "")
        reason = f"ARM64: signed INT8 QDQ with symmetric per-channel weights feeds ONNX Runtime's {kernels} int8 GEMM kernels"
    elif "avx512_vnni" in feats or "avx_vnni" in feats:
        want = dict(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=False)
        reason = "x86-64 with VNNI: U8S8 without reduce_range (VNNI accumulates without saturation)"
    else:
        want = dict(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=True)
        reason = ("x86-64 without VNNI: U8S8 with reduce_range=True to avoid pmaddubsw saturation "
                  "(ONNX Runtime quantization docs)")
    # Explicit user choices win over the target's scheme; only unset fields are filled.
    updates = {k: v for k, v in want.items() if getattr(q, k) is None}
    new_q = replace(q, **updates)
    return PassResult("quant-scheme", changed=bool(updates), summary=reason,
                      details={"chosen": {k: getattr(new_q, k) for k in want},
                               "user_overrides": sorted(set(want) - set(updates)), "reason": reason},
                      quant=new_q)
