"""The ONNX format backend: float export -> target passes -> pre-processing -> QDQ static (or dynamic) INT8."""

from __future__ import annotations

import shutil

from edgeq.backends.base import BuildContext, register_format
from edgeq.manifest import Artifact
from edgeq.onnx.export import export_float_onnx, preprocess
from edgeq.onnx.quantize import quantize_onnx_dynamic, quantize_onnx_static
from edgeq.pipeline.stage import PassContext, apply_stage

FP32_NAME = "model.fp32.onnx"
INT8_NAME = "model.int8.onnx"
INT8_DYNAMIC_NAME = "model.int8-dynamic.onnx"


@register_format("onnx")
def build_onnx(ctx: BuildContext) -> list[Artifact]:
    ctx.progress.stage("ONNX: exporting the float graph (torch.onnx, dynamo)")
    fp32 = export_float_onnx(ctx.captured, ctx.workdir / FP32_NAME, ctx.opset, ctx.output_names)
    _rename_outputs(fp32, ctx.output_names)

    pctx = PassContext(target=ctx.target, fmt="onnx", workdir=ctx.workdir, quant=ctx.quant,
                       calib=ctx.calib, eval=ctx.eval, captured=ctx.captured, notes=ctx.notes)
    apply_stage("configure", pctx, ctx.pass_log)
    quant = pctx.quant.resolved(ctx.target.quant_defaults())

    # Graph passes work on a scratch copy; the shipped float model stays the plain export.
    work = ctx.scratch / "model.pre_quant.onnx"
    shutil.copyfile(fp32, work)
    pctx.model_path = work
    apply_stage("pre_quant", pctx, ctx.pass_log)

    ctx.progress.stage("ONNX: pre-processing (onnxruntime quant_pre_process)")
    prepped, prep_note = preprocess(pctx.model_path, ctx.scratch / "model.prep.onnx")

    if quant.mode == "dynamic":
        ctx.progress.stage("ONNX: dynamic INT8 quantization")
        out = ctx.workdir / INT8_DYNAMIC_NAME
        qinfo = quantize_onnx_dynamic(prepped, out, quant)
        precision = "int8-dynamic"
    else:
        n = min(len(ctx.calib), quant.max_calibration_samples)
        ctx.progress.stage(f"ONNX: calibrating on {n} samples ({quant.calibration}) and quantizing (QDQ)")
        out = ctx.workdir / INT8_NAME
        with ctx.progress.bar(n, "calibration") as bar:
            qinfo = quantize_onnx_static(prepped, out, ctx.calib, quant, on_sample=lambda: bar.update(1))
        precision = "int8-static"
    qinfo["preprocessing"] = prep_note
    pctx.model_path = out
    apply_stage("post_quant", pctx, ctx.pass_log)
    _rename_outputs(out, ctx.output_names)

    arts = [
        Artifact(name="onnx-fp32", path=FP32_NAME, format="onnx", precision="fp32", role="baseline"),
        Artifact(name=f"onnx-{precision}", path=out.name, format="onnx", precision=precision, role="candidate",
                 quantization=qinfo, details=_graph_stats(out)),
    ]
    arts[0].details = _graph_stats(fp32)
    for a in arts:
        a.refresh(ctx.workdir)
    return arts


def _rename_outputs(path, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Give graph outputs edgeq's canonical names so every format and the reference agree."""
    import onnx

    model = onnx.load(str(path))
    current = [o.name for o in model.graph.output]
    if current == names or len(current) != len(names):
        return
    mapping = dict(zip(current, names, strict=True))
    for node in model.graph.node:
        for i, o in enumerate(node.output):
            if o in mapping:
                node.output[i] = mapping[o]
        for i, x in enumerate(node.input):
            if x in mapping:
                node.input[i] = mapping[x]
    for o in model.graph.output:
        o.name = mapping[o.name]
    for vi in model.graph.value_info:
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    onnx.save(model, str(path))


def _graph_stats(path) -> dict:  # type: ignore[no-untyped-def]
    import collections

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return {"nodes": sum(ops.values()), "op_counts": dict(sorted(ops.items())),
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)}
