"""The ExecuTorch format backend (``--format pte``).

static-batch ``torch.export`` → float ``.pte`` (XNNPACK fp32) → PT2E INT8 (XNNPACKQuantizer, calibrated on the
same data as the ONNX path) → INT8 ``.pte`` → ``.bpte`` bundle with golden I/O. Each ``.pte`` carries a delegation
report in ``details["delegation"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeq.backends.base import BuildContext, register_format
from edgeq.errors import DataError, UsageError
from edgeq.executorch.bundle import DEFAULT_CASES, derive_tolerances, write_bundle
from edgeq.executorch.lower import lower_to_executorch
from edgeq.executorch.quantize import quantize_pt2e, sample_args
from edgeq.manifest import Artifact
from edgeq.pipeline.stage import PassContext, apply_stage

FP32_NAME = "model.fp32.pte"
INT8_NAME = "model.int8.pte"
INT8_DYNAMIC_NAME = "model.int8-dynamic.pte"
BUNDLE_NAME = "model.int8.bpte"
# dtypes an ExecuTorch program input can take (and the C++ runner's tensor file can carry).
SUPPORTED_INPUT_DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")


@register_format("pte")
def build_pte(ctx: BuildContext) -> list[Artifact]:
    _check_inputs(ctx)
    pctx = PassContext(target=ctx.target, fmt="pte", workdir=ctx.workdir, quant=ctx.quant, calib=ctx.calib,
                       eval=ctx.eval, captured=ctx.captured, notes=ctx.notes)
    apply_stage("configure", pctx, ctx.pass_log)
    quant = pctx.quant
    backend_config = dict(pctx.notes.get("executorch_backend_config", {}))

    ctx.progress.stage("ExecuTorch: exporting with a static batch of 1")
    static = static_export(ctx.captured, ctx.calib)

    # Quantize first: calibration problems (unreached observers, integer paths) surface before the slow lowering.
    n = min(len(ctx.calib), quant.max_calibration_samples)
    label = f"calibrating on {n} samples" if quant.mode == "static" else "dynamic INT8 (no calibration)"
    ctx.progress.stage(f"ExecuTorch: PT2E INT8 with the XNNPACK quantizer, {label}")
    with ctx.progress.bar(n if quant.mode == "static" else 0, "calibration") as bar:
        qep, qinfo = quantize_pt2e(static, ctx.calib, ctx.captured.signature, quant, ctx.target,
                                   on_sample=lambda: bar.update(1))

    ctx.progress.stage("ExecuTorch: lowering the float graph to XNNPACK")
    fp32_prog, fp32_deleg = lower_to_executorch(static, backend_config)
    (ctx.workdir / FP32_NAME).write_bytes(fp32_prog.buffer)
    ctx.progress.stage("ExecuTorch: lowering the INT8 graph to XNNPACK")
    int8_prog, int8_deleg = lower_to_executorch(qep, backend_config)
    int8_name = INT8_NAME if quant.mode == "static" else INT8_DYNAMIC_NAME
    (ctx.workdir / int8_name).write_bytes(int8_prog.buffer)
    qinfo["backend_config"] = backend_config

    ctx.progress.stage("ExecuTorch: bundling golden I/O (.bpte)")
    bundle_info = _bundle(ctx, static, int8_prog, ctx.workdir / int8_name)

    precision = "int8-static" if quant.mode == "static" else "int8-dynamic"
    arts = [
        Artifact(name="pte-fp32", path=FP32_NAME, format="pte", precision="fp32", role="baseline",
                 details={"delegation": fp32_deleg, "batch": 1, "backend_config": backend_config}),
        Artifact(name=f"pte-{precision}", path=int8_name, format="pte", precision=precision, role="candidate",
                 quantization=qinfo, details={"delegation": int8_deleg, "batch": 1, "backend_config": backend_config}),
        Artifact(name="pte-bundled", path=BUNDLE_NAME, format="bpte", precision=precision, role="auxiliary",
                 details={"bundled": bundle_info, "program": int8_name}),
    ]
    for a in arts:
        a.refresh(ctx.workdir)
    return arts


def _check_inputs(ctx: BuildContext) -> None:
    if ctx.captured.source.kind == "onnx" or ctx.captured.exported is None:
        raise UsageError(f"--format pte needs a PyTorch model; {ctx.captured.source.ref} is an ONNX file",
                         "pass the torch model (pkg.module:factory or a .pt2), or use --format onnx")
    for spec in ctx.captured.signature:
        if spec.dtype not in SUPPORTED_INPUT_DTYPES:
            raise DataError(f"input {spec.name!r} has dtype {spec.dtype}, which ExecuTorch .pte inputs do not support",
                            f"use one of {', '.join(SUPPORTED_INPUT_DTYPES)} (e.g. cast token ids to int64)")


def static_export(captured: Any, calib: Any) -> Any:
    """An ExportedProgram with batch 1: ExecuTorch memory planning and XNNPACK want static shapes."""
    import torch

    from edgeq.capture import _capture_error

    if not captured.dynamic_batch:
        return captured.exported
    module = captured.source.module if captured.source.module is not None else captured.exported.module()
    args = sample_args(calib, captured.signature, 0)
    try:
        return torch.export.export(module, args, strict=False)
    except Exception as e:
        raise _capture_error(e) from e


def _bundle(ctx: BuildContext, static: Any, program: Any, pte: Path) -> dict[str, Any]:
    """Golden I/O from the float model on the first evaluation samples, with tolerances from the INT8 program."""
    import torch
    from torch.utils._pytree import tree_flatten

    from edgeq.executorch.runtime import run_pte

    k = min(DEFAULT_CASES, len(ctx.eval))
    float_module = static.module()
    cases, expected = [], []
    with torch.no_grad():
        for i in range(k):
            args = sample_args(ctx.eval, ctx.captured.signature, i)
            outs, _ = tree_flatten(float_module(*args))
            arrays = [o.detach().numpy().copy() for o in outs]
            cases.append((args, arrays))
            expected.append(arrays)
    inputs = [np.ascontiguousarray(ctx.eval.inputs[s.name][:k]) for s in ctx.captured.signature]
    got, _ = run_pte(pte, inputs, warmup=0, repeats=0)
    actual = [[got[name][i:i + 1] for name in got] for i in range(k)]
    tol = derive_tolerances(expected, actual)
    write_bundle(program, cases, ctx.workdir / BUNDLE_NAME)
    return {"test_cases": k, "method": "forward", "expected": "float model outputs (torch eager)", **tol,
            "verify": "ExecuTorch bundled IO: verify_result_with_bundled_expected_output(bundle, 'forward', i, rtol, atol)"}
