"""Apply the target profile's ONNX quantization scheme (its ``[formats.onnx]`` table) and record why it was chosen.

The scheme is data, not code: ``activation_type``/``weight_type`` (S8S8 on ARM64 for ONNX Runtime's NEON/SDOT/I8MM
int8 GEMM kernels; U8S8 on x86-64, whose ORT kernels fuse uint8-activation QDQ only, with ``reduce_range`` where
there is no VNNI and pmaddubsw saturates), ``per_channel``,
``reduce_range`` and ``calibration`` come from the target TOML, with its ``reason``. Explicit user options
(CLI flags, ``edgeq.toml``, Python) win over the profile; only unset fields are filled.

A profile may also name a second scheme and the host CPU flags that select it (``if_host_*``): the x86-64 target,
whose model runs on the machine doing the export, drops reduce_range when that machine has VNNI. The
flags checked and the outcome are recorded in the manifest's pass log.
"""

from __future__ import annotations

from dataclasses import replace

from edgeq.config import INT_TYPES, IntType
from edgeq.errors import UsageError
from edgeq.hostcpu import host_arch, host_features
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState
from edgeq.targetspec import OnnxScheme, Target

NAME = "quant-scheme"
SCHEME_FIELDS = ("activation_type", "weight_type", "per_channel", "reduce_range", "calibration")
_INT_TYPE_BY_NAME: dict[str, IntType] = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16"}


def host_condition(target: Target) -> bool:
    """True when the target names host flags for its second scheme and this machine (same arch) has one."""
    flags = target.spec(OnnxScheme).if_host_has
    return bool(flags) and host_arch() == target.cpu.arch and bool(set(flags) & host_features())


def _condition_record(target: Target) -> JSONObject | None:
    flags = target.spec(OnnxScheme).if_host_has
    if not flags:
        return None
    return {"if_host_has": list(flags), "host_arch": host_arch(),
            "host_has": sorted(set(flags) & host_features()), "met": host_condition(target)}


def _activation_type(name: str | None, default: IntType | None) -> IntType | None:
    """The target's ``if_host_activation_type`` (a string in the TOML) as a QuantOptions activation type."""
    if not name:
        return default
    if name not in _INT_TYPE_BY_NAME:  # QuantOptions' own check, with its message
        raise UsageError(f"unknown activation_type {name!r}", f"choose one of {', '.join(INT_TYPES)}")
    return _INT_TYPE_BY_NAME[name]


@register_stage(NAME, StageKind.TRANSFORM, "configure", formats=("onnx",),
                description="fill the quantization options from the target's [formats.onnx] scheme (user options win)",
                declares=Declares(reads=("quant",), writes=("quant",)))
def quant_scheme(ctx: BuildState) -> StageResult:
    target = ctx.target
    defaults = target.quant_defaults()
    o = target.spec(OnnxScheme)
    reason = o.reason
    if host_condition(target):
        defaults = replace(defaults, activation_type=_activation_type(o.if_host_activation_type, defaults.activation_type),
                           reduce_range=defaults.reduce_range if o.if_host_reduce_range is None
                           else o.if_host_reduce_range)
        reason = o.if_host_reason or f"host CPU has {'/'.join(o.if_host_has)}"
    q = ctx.quant
    updates = {k: getattr(defaults, k) for k in SCHEME_FIELDS if getattr(q, k) is None}
    new_q = replace(q, **updates)
    return StageResult(NAME, changed=bool(updates), summary=reason, state=ctx.updated(quant=new_q),
                       details={"chosen": {k: getattr(new_q, k) for k in SCHEME_FIELDS},
                                "host_condition": _condition_record(target),
                                "user_overrides": sorted(set(SCHEME_FIELDS) - set(updates)), "reason": reason,
                                "source": target.path or target.name})
