"""Fuse transformer subgraphs with ONNX Runtime's transformer optimizer before quantization.

``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` rewrites the attention block into
``com.microsoft:Attention``, LayerNorm + residual Add into ``SkipLayerNormalization``, the Erf GELU into
``Gelu``/``BiasGelu``. Fewer, larger kernels run faster on ARM CPUs and give the quantizer whole-op boundaries.
``opt_level=0`` keeps it to the Python fusions: ORT's own graph optimizer runs later in ``quant_pre_process``.
The pass only runs on graphs that look like a transformer (Softmax + MatMul + a LayerNorm), and reverts itself
if the fused graph's outputs move beyond a relative 1e-3 on a few real samples.
"""

from __future__ import annotations

import contextlib
import io
import logging

import onnx
from onnx import helper

from edgeq.jsontypes import JSONObject
from edgeq.onnx.graph_util import SELF_CHECK_RTOL, graph_path, op_counts, outputs_moved
from edgeq.onnx.io import save_atomic
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState

NAME = "transformer-fusions"


def looks_like_transformer(ops: dict[str, int]) -> bool:
    """Attention (MatMul -> Softmax -> MatMul) plus a layer norm, either as one op or decomposed."""
    has_norm = ops.get("LayerNormalization", 0) > 0 or (ops.get("ReduceMean", 0) >= 2 and ops.get("Sqrt", 0) > 0)
    return ops.get("Softmax", 0) > 0 and ops.get("MatMul", 0) >= 2 and has_norm


def fuse(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Return the fused model and the count of each fused operator (ONNX Runtime's statistics)."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer logs every fusion attempt at INFO/WARNING; the pass reports a summary instead.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # num_heads/hidden_size = 0: detected from the graph (the fusion reads them off the Reshape shapes).
        opt = optimize_model(model, model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    fused: onnx.ModelProto = opt.model  # onnxruntime's OnnxModel wraps the ModelProto
    # The fused ops live in com.microsoft; declare the domain so ONNX tooling (shape inference, checker) accepts them.
    domains = {o.domain for o in fused.opset_import}
    used = {n.domain for n in fused.graph.node if n.domain not in ("", "ai.onnx")}

    for d in sorted(used - domains):
        fused.opset_import.append(helper.make_opsetid(d, 1))
    return fused, stats


@register_stage(NAME, StageKind.TRANSFORM, "pre_quant", formats=("onnx",),
                description="Attention/SkipLayerNorm/GELU fusions (onnxruntime.transformers) on transformer graphs",
                declares=Declares(reads=("model_path", "calib", "eval"), writes=("model_path",)))
def transformer_fusions(ctx: BuildState) -> StageResult:
    src = graph_path(ctx, NAME)
    model = onnx.load(str(src))
    before = op_counts(model)
    if not looks_like_transformer(before):
        return StageResult(NAME, changed=False, summary="not a transformer graph (no attention + layer norm): skipped",
                          details={"transformer": False})
    fused, stats = fuse(model)
    after = op_counts(fused)
    if not stats or after == before:
        return StageResult(NAME, changed=False, summary="transformer graph, but no fusion pattern matched",
                          details={"transformer": True, "op_counts_before": before})
    out = src.with_name(src.stem + ".fused.onnx")
    save_atomic(fused, out)
    details: JSONObject = {"transformer": True, "fused": stats, "op_counts_before": before,
                           "op_counts_after": after, "nodes_before": sum(before.values()),
                           "nodes_after": sum(after.values())}
    moved = outputs_moved(ctx, src, out, details)
    if moved is not None:
        out.unlink()
        return StageResult(NAME, changed=False, details=details,
                          summary=f"fusions reverted: outputs moved by {moved:.2e} (> {SELF_CHECK_RTOL:g})")
    fused_txt = ", ".join(f"{k}×{v}" for k, v in sorted(stats.items()))
    return StageResult(NAME, changed=True, details=details, state=ctx.updated(model_path=out),
                      summary=f"fused {fused_txt}; {details['nodes_before']} -> {details['nodes_after']} nodes")
