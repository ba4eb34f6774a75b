"""How much of each shipped ONNX model NNAPI (Android) / CoreML (iOS) would take: nodes, partitions, blockers.

The logic is ONNX Runtime's mobile usability checker (``onnxruntime.tools.mobile_helpers.usability_checker``):
ORT optimizes the model at BASIC level as it would at load, shape inference fills value infos, then
the EP's supported-op table (shipped with ORT) and its static-shape rule split the graph into partitions the
way ORT's ``CreateSupportedPartitionNodeGroups`` does. One partition covering >75 % of nodes: YES; more
partitions mean CPU<->accelerator copies and usually a slower model. The result goes into the artifact's
``details["mobile_usability"]`` and a report section lists the nodes that keep work on the CPU.
"""

from __future__ import annotations

import collections
import html
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgeq.jsontypes import (
    JSONObject,
    as_object,
    get_int,
    get_object,
    get_object_or_none,
    get_objects,
    get_str,
)
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState
from edgeq.report.sections import register_section
from edgeq.targetspec import OnnxScheme, Target

if TYPE_CHECKING:  # onnxruntime ships no type information: the name documents what the checkers return
    from onnxruntime.tools.mobile_helpers.usability_checker import PartitioningInfo

Checker = Callable[[onnx.ModelProto, bool], "PartitioningInfo"]  # (model, require fixed input sizes)

NAME = "mobile-usability"
MOBILE_EPS = ("NNAPI", "CoreML")
MAX_LISTED_BLOCKERS = 40


def _checkers() -> dict[str, Checker]:
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    return {
        "NNAPI": lambda m, fixed: uc.check_nnapi_partitions(m, require_fixed_input_sizes=fixed),
        "CoreML-MLProgram": lambda m, fixed: uc.check_coreml_partitions(m, fixed, "coreml_supported_mlprogram_ops.md"),
        "CoreML-NeuralNetwork": lambda m, fixed: uc.check_coreml_partitions(
            m, fixed, "coreml_supported_neuralnetwork_ops.md"),
    }


def analyze(model_path: Path, eps: tuple[str, ...]) -> JSONObject:
    """Partitioning per EP (NNAPI; CoreML as both MLProgram and NeuralNetwork) with blocking nodes."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.tools.onnx_model_utils import optimize_model

    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="edgeq-usab-") as tmp:
        opt = Path(tmp) / model_path.name
        optimize_model(model_path, opt)  # what ORT does at load (BASIC), as the checker does
        model = onnx.shape_inference.infer_shapes(onnx.load(str(opt)), strict_mode=True)
    dynamic_inputs = [i.name for i in model.graph.input
                      if any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)]
    checkers = _checkers()
    per_ep: JSONObject = {}
    out: JSONObject = {"dynamic_inputs": dynamic_inputs, "eps": per_ep}
    for ep in eps:
        for key, fn in checkers.items():
            if not key.startswith(ep):
                continue
            info = fn(model, True)  # require fixed sizes: what actually happens at run time
            in_groups = {id(n) for g in info.supported_groups for n in g}
            unsupported = set(info.unsupported_ops)
            blockers: list[JSONObject] = []
            for n in model.graph.node:
                if id(n) in in_groups:
                    continue
                op = f"{n.domain or 'ai.onnx'}:{n.op_type}"
                blockers.append({"node": n.name, "op": op,
                                 "reason": "operator not supported" if op in unsupported
                                 else "dynamic input shape or unsupported rank"})
            pct = 100.0 * info.num_supported_nodes / max(1, info.num_nodes)
            per_ep[key] = {
                "nodes": info.num_nodes, "supported_nodes": info.num_supported_nodes,
                "partitions": info.num_partitions, "partition_sizes": [len(g) for g in info.supported_groups],
                "percent_supported": round(pct, 1), "suitability": info.suitability().name,
                "unsupported_ops": sorted(unsupported),
                "nodes_unsupported_due_to_op": info.nodes_unsupported_due_to_op,
                "nodes_unsupported_due_to_dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
                "blocking_nodes": blockers[:MAX_LISTED_BLOCKERS], "blocking_nodes_total": len(blockers),
                "caveats": info.supported_ops_checker.get_caveats(),
            }
    return out


def _is_mobile(target: Target) -> bool:
    return any(ep in MOBILE_EPS for ep in target.spec(OnnxScheme).execution_providers)


@register_stage(NAME, StageKind.CHECK, "artifact", formats=("onnx",), applies_to=_is_mobile,
                description="NNAPI/CoreML partitions, coverage and blocking nodes (ORT mobile usability checker)",
                declares=Declares(reads=("artifacts",)))
def mobile_usability(ctx: BuildState) -> StageResult:
    eps = tuple(ep for ep in ctx.target.spec(OnnxScheme).execution_providers if ep in MOBILE_EPS)
    per_art: dict[str, JSONObject] = {}
    for a in ctx.artifacts:
        if a.format != "onnx" or a.role != "candidate":
            continue
        res = analyze(ctx.workdir / a.path, eps)
        per_art[a.name] = res
    parts = []
    for name, res in per_art.items():
        for ep, r, blocking in _per_ep(res):
            blocked = collections.Counter(get_str(b, "op").split(":")[-1] for b in blocking)
            parts.append(f"{name} {ep}: {r['supported_nodes']}/{r['nodes']} nodes in {r['partitions']} "
                         f"partition(s), {r['suitability']}"
                         + (f" (blocked: {', '.join(f'{op}×{n}' for op, n in blocked.most_common(4))})"
                            if blocked else ""))
    return StageResult(NAME, changed=False, details={"artifacts": per_art},
                       artifact_details={name: {"mobile_usability": res} for name, res in per_art.items()},
                      summary="; ".join(parts) or "no ONNX candidate to analyze")


def _per_ep(res: JSONObject) -> list[tuple[str, JSONObject, list[JSONObject]]]:
    """(EP, its record, its listed blocking nodes) of one artifact's analysis."""
    out = []
    for ep, value in get_object(res, "eps").items():
        r = as_object(value, ep)
        out.append((ep, r, get_objects(r, "blocking_nodes")))
    return out


@register_section("mobile-usability")
def _section(manifest: JSONObject) -> str | None:
    rows = []
    for a in get_objects(manifest, "artifacts"):
        res = get_object_or_none(get_object_or_none(a, "details") or {}, "mobile_usability")
        if not res:
            continue
        for ep, r, blocking in _per_ep(res):
            groups: dict[tuple[str, str], list[str]] = {}
            for b in blocking:
                groups.setdefault((get_str(b, "op").split(":")[-1], get_str(b, "reason")), []).append(
                    str(b["node"] or "(unnamed)"))
            blockers = "; ".join(f"{op} ×{len(names)} ({reason}): {', '.join(names[:3])}"
                                 + (" …" if len(names) > 3 else "") for (op, reason), names in groups.items())
            more = get_int(r, "blocking_nodes_total") - len(blocking)
            rows.append(f"<tr><td>{html.escape(get_str(a, 'name'))}</td><td>{html.escape(ep)}</td>"
                        f"<td class='num'>{r['supported_nodes']}/{r['nodes']} ({r['percent_supported']}%)</td>"
                        f"<td class='num'>{r['partitions']}</td><td>{html.escape(get_str(r, 'suitability'))}</td>"
                        f"<td>{html.escape(blockers) or '—'}{f' (+{more} more not listed)' if more > 0 else ''}"
                        "</td></tr>")
    if not rows:
        return None
    return ("<h2>Mobile execution providers</h2><p class='muted'>ONNX Runtime mobile usability analysis: nodes and "
            "partitions NNAPI / CoreML would take (YES: one partition over 75&nbsp;% of nodes). Blocking nodes stay "
            "on the CPU EP.</p><table><tr><th>artifact</th><th>EP</th><th>nodes taken</th><th>partitions</th>"
            "<th>usable</th><th>blocking nodes</th></tr>" + "".join(rows) + "</table>")
