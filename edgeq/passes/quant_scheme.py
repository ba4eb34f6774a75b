"""Choose the ONNX quantization scheme for the target's ISA.

ARM64 (NEON, SDOT/I8MM): signed INT8 activations and weights (S8S8), symmetric per-channel weights in QDQ —
the combination ONNX Runtime's ARM64 int8 GEMM kernels are built for. x86-64 without VNNI: U8S8 with
``reduce_range`` — the pmaddubsw instruction saturates on S8S8 with 8-bit weights (ONNX Runtime docs,
"Quantize ONNX models", section on x86 saturation); with VNNI no reduction is needed.

A target may name a second scheme and the host CPU flags that select it (``if_host_*`` in its ``[onnx]``
table): the x86-64 target, which runs on the machine doing the export, picks S8S8 without reduce_range when
that machine has VNNI. The flags checked and the outcome are recorded in the pass log of the manifest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edgeq.hostcpu import host_arch, host_features
from edgeq.passes.registry import PassContext, PassResult, register_pass


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
    elif _host_condition(target):
        o = target.onnx
        want = dict(activation_type=o.if_host_activation_type or o.activation_type, weight_type=o.weight_type,
                    per_channel=True,
                    reduce_range=o.reduce_range if o.if_host_reduce_range is None else o.if_host_reduce_range)
        reason = o.if_host_reason or f"host CPU has {'/'.join(o.if_host_has)}"
    elif "avx512_vnni" in feats or "avx_vnni" in feats:
        want = dict(activation_type="int8", weight_type="int8", per_channel=True, reduce_range=False)
        reason = "x86-64 with VNNI: S8S8 without reduce_range (VNNI accumulates without saturation)"
    else:
        want = dict(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=True)
        reason = ("x86-64 without VNNI: U8S8 with reduce_range=True to avoid pmaddubsw saturation "
                  "(ONNX Runtime quantization docs)")
    # Explicit user choices win over the target's scheme; only unset fields are filled.
    updates = {k: v for k, v in want.items() if getattr(q, k) is None}
    new_q = replace(q, **updates)
    return PassResult("quant-scheme", changed=bool(updates), summary=reason,
                      details={"chosen": {k: getattr(new_q, k) for k in want},
                               "host_condition": _condition_record(target),
                               "user_overrides": sorted(set(want) - set(updates)), "reason": reason},
                      quant=new_q)


def _host_condition(target: Any) -> bool:
    """True when the target names host flags for its second scheme and this machine (same arch) has one."""
    flags = target.onnx.if_host_has
    return bool(flags) and host_arch() == target.cpu.arch and bool(set(flags) & host_features())


def _condition_record(target: Any) -> dict[str, Any] | None:
    flags = target.onnx.if_host_has
    if not flags:
        return None
    return {"if_host_has": list(flags), "host_arch": host_arch(),
            "host_has": sorted(set(flags) & host_features()), "met": _host_condition(target)}
