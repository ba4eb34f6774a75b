"""Warnings for INT8 artifacts that lose what INT8 is for: smaller and faster than the float model.

An INT8 model can be *larger* than float (QDQ scaffolding around a model that is mostly float after exclusions)
or *slower* (the runtime has no int8 kernel for the op mix, so it dequantizes around every node). Neither fails
the accuracy budget, so neither would be seen; each is reported next to the verdict, per runner.
"""

from __future__ import annotations

from edgeq.manifest import Artifact


def int8_regressions(artifacts: list[Artifact]) -> list[str]:
    """One message per (INT8 candidate, runner) that is larger or slower than the float artifact of its format."""
    floats = {a.format: a for a in artifacts if a.precision == "fp32" and a.role != "auxiliary"}
    out = []
    for art in artifacts:
        base = floats.get(art.format)
        if art.role != "candidate" or not art.precision.startswith(("int8", "mixed")) or base is None:
            continue
        if base.bytes and art.bytes > base.bytes:
            out.append(f"{art.name} is larger than {base.name}: {art.bytes / base.bytes:.2f}x the float size")
        base_lat = {(v.runner, v.cpu_model): v.latency_ms for v in base.validations if v.latency_ms}
        for v in art.validations:
            ref = base_lat.get((v.runner, v.cpu_model))
            if ref and v.latency_ms and v.latency_ms > ref:
                out.append(f"{art.name} is slower than {base.name} on {v.runner}"
                           + (f" ({v.cpu_model})" if v.emulated else "")
                           + f": {v.latency_ms:.2f} ms vs {ref:.2f} ms ({v.latency_ms / ref:.2f}x)")
    return out
