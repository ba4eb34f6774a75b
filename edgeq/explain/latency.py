"""Where the time goes, for every artifact of an export: the per-operator profiles and the warnings that name
the operators a runtime executes the slow way. The result is the manifest's ``explain`` key (plain JSON)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.explain.onnx_profile import UnfusedNode, profile_onnx
from edgeq.explain.pte_profile import profile_pte
from edgeq.jsontypes import JSONObject, get_float, get_object_or_none, get_objects, get_str
from edgeq.manifest import Artifact
from edgeq.progress import Progress

PROFILED_FORMATS = ("onnx", "ort", "pte")  # a .bpte is the .pte plus golden I/O: the same program


def profile_artifacts(outdir: Path, artifacts: list[Artifact], inputs_rel: str,
                      progress: Progress | None = None) -> JSONObject:
    """Profile each artifact on the first evaluation sample and collect the warnings."""
    progress = progress or Progress(enabled=False)
    with np.load(outdir / inputs_rel, allow_pickle=False) as z:
        inputs = {k: np.ascontiguousarray(z[k]) for k in z.files if k != "labels"}
    profiles: list[JSONObject] = []
    warnings: list[JSONObject] = []
    notes: list[str] = []
    for a in artifacts:
        if a.format not in PROFILED_FORMATS:
            continue
        progress.stage(f"explain: per-operator profile of {a.name}")
        try:
            prof, found = _profile_one(outdir / a.path, a, inputs)
        except Exception as e:  # a diagnostic: the artifacts were already validated, so it never fails the export
            notes.append(f"{a.name}: no per-operator profile ({type(e).__name__}: {str(e)[:200]})")
            continue
        profiles.append(prof)
        warnings += found
    warnings += _slower_than_float(artifacts, profiles)
    return {"profiles": profiles, "warnings": warnings, "notes": notes}


def _slower_than_float(artifacts: list[Artifact], profiles: list[JSONObject]) -> list[JSONObject]:
    """A quantized artifact whose profiled run took longer than its float baseline's: name where its time went
    (the paired latency measurement says *that* it is slower; this says which operators)."""
    by_name = {get_str(p, "artifact"): p for p in profiles}
    out: list[JSONObject] = []
    for a in artifacts:
        prof = by_name.get(a.name)
        ratio = _host_ratio(a)  # the paired latency measurement decides: a 10-run profile alone is too noisy
        if a.role != "candidate" or prof is None or ratio is None or ratio <= 1.1:
            continue
        slowest = get_objects(prof, "ops")[:3]
        top = ", ".join(f"{o['name']} ({o['op']}, {o['ms']:.3f} ms)" for o in slowest)
        out.append({"artifact": a.name, "kind": "slower_than_float", "operators": [o["op"] for o in slowest],
                    "ratio": ratio,
                    "message": f"{a.name} ran {ratio:.2f}× the float {a.format} artifact's latency on the host; in "
                               f"its profile the time goes to {top}"})
    return out


def _host_ratio(a: Artifact) -> float | None:
    for v in a.validations:
        r = (v.latency_detail or {}).get("ratio_to_float") if v.runner == "host" else None
        if isinstance(r, int | float):
            return float(r)
    return None


def _profile_one(path: Path, a: Artifact, inputs: dict[str, np.ndarray]) -> tuple[JSONObject, list[JSONObject]]:
    if a.format == "pte":
        prof = profile_pte(path, list(inputs.values()), a.name).to_dict()
        return prof, _delegation_warnings(a, prof)
    sample = {k: v[:1] for k, v in inputs.items()}
    p, unfused = profile_onnx(path, sample, a.name)
    prof = p.to_dict()
    return prof, _unfused_warnings(a, prof, unfused)


def _delegation_warnings(a: Artifact, prof: JSONObject) -> list[JSONObject]:
    """Operators the XNNPACK partitioner left to ExecuTorch's portable kernels (the delegation report), with the
    share of the run their kernels took in the profile."""
    deleg = get_object_or_none(a.details, "delegation") or {}
    counts = {op: n for op, n in (get_object_or_none(deleg, "non_delegated_counts") or {}).items()
              if isinstance(n, int)}
    if not counts:
        return []
    portable = sum(get_float(o, "ms") for o in get_objects(prof, "ops") if o["where"] == "portable")
    share = portable / get_float(prof, "runtime_ms") if prof.get("runtime_ms") else None
    ops = ", ".join(f"{op} ×{n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    msg = (f"{a.name}: {sum(counts.values())} operator(s) outside the XNNPACK delegate, run by ExecuTorch's "
           f"portable kernels: {ops}" + (f" ({share:.1%} of the profiled run)" if share is not None else "")
           + "; on a device these are unvectorized reference kernels, often many times slower than XNNPACK: "
             "rewrite the model around these operators, or ship the ONNX artifact")
    return [{"artifact": a.name, "kind": "not_delegated", "operators": sorted(counts), "portable_share": share,
             "message": msg}]


def _unfused_warnings(a: Artifact, prof: JSONObject, unfused: list[UnfusedNode]) -> list[JSONObject]:
    if not unfused:
        return []
    ms = sum(u.ms or 0.0 for u in unfused)
    share = ms / get_float(prof, "runtime_ms") if prof.get("runtime_ms") else None
    names = ", ".join(f"{u.node} ({u.op})" for u in unfused[:8]) + (
        f" and {len(unfused) - 8} more" if len(unfused) > 8 else "")
    msg = (f"{a.name}: {len(unfused)} node(s) run in float between Q/DQ pairs onnxruntime did not fuse: {names}"
           + (f" ({share:.1%} of the profiled run, plus their Q/DQ conversions)" if share is not None else "")
           + "; these pay a dequantize/quantize round trip and float math: exclude them from quantization "
             "(--exclude-node) to drop the round trip, or check that the target's runtime has an integer kernel")
    return [{"artifact": a.name, "kind": "unfused_qdq", "operators": sorted({u.op for u in unfused}),
             "nodes": [u.node for u in unfused], "float_share": share, "message": msg}]
