"""The ExecuTorch format backend (``--format pte``).

static-batch ``torch.export`` → float ``.pte`` (XNNPACK fp32) → PT2E INT8 (XNNPACKQuantizer, calibrated on the
same data as the ONNX path) → INT8 ``.pte`` → ``.bpte`` bundle with golden I/O. Each ``.pte`` carries a delegation
report in ``details["delegation"]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from edgeq.backends.base import BuildInputs, Candidate, FormatBackend, HostProgram, register_format
from edgeq.capture import Captured, capture_error
from edgeq.compress.qat_graph import QatGraph
from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.errors import DataError, PipelineError, UsageError
from edgeq.executorch.bundle import DEFAULT_CASES, derive_tolerances, write_bundle
from edgeq.executorch.lower import lower_to_executorch
from edgeq.executorch.quantize import convert_qat, quantize_pt2e, sample_args
from edgeq.executorch.runtime import run_pte
from edgeq.jsontypes import JSONObject
from edgeq.manifest import Artifact
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.recipe import Reason, Recipe, RecipeSupport
from edgeq.signature import TensorSpec
from edgeq.targetspec import ExecutorchSpec, Target
from edgeq.validate.runners.host import host_program

if TYPE_CHECKING:
    import torch
    from executorch.exir import ExecutorchProgramManager

FP32_NAME = "model.fp32.pte"
INT8_NAME = "model.int8.pte"
INT8_DYNAMIC_NAME = "model.int8-dynamic.pte"
BUNDLE_NAME = "model.int8.bpte"
# dtypes an ExecuTorch program input can take (and the C++ runner's tensor file can carry).
SUPPORTED_INPUT_DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")


_LLM_FLOW = "n-bit .pte weights (8da4w) come from the LLM flow (edgeq export --task text-generation), or keep 8 bits"
# What the XNNPACK PT2E flow builds. No-ops: XNNPACK takes signed int8 activations and symmetric int8 weights, so
# other 8/16-bit types and reduce_range are built as int8 and listed in quantization.ignored_options; its dynamic
# activations are always per token.
PTE_SUPPORT = RecipeSupport(
    fmt="pte", schemes=("static", "dynamic", "hybrid"), override_kinds=("float", "float16"),
    weight_types=("int8", "uint8", "int16", "uint16"), compression=True, mixed_float_kinds=False,
    reasons=(Reason("override:int16-activations", "XNNPACK's PT2E quantizer has no 16-bit activation scheme",
                    "use --format onnx for W8A16 mixed precision, or export the formats separately"),
             Reason("overrides:mixed-float", "the XNNPACK flow stores every kept-float linear in float16 or none "
                    "(edgeq.executorch.fp16_linears)", "make every kept layer float, or every one float16"),
             Reason("scheme:weight-only", "the image/tensor .pte flow quantizes activations (static or dynamic INT8)",
                    _LLM_FLOW),
             Reason("weights:int4", "XNNPACK's PT2E quantizer config takes int8 weights", _LLM_FLOW),
             Reason("weights:uint4", "XNNPACK's PT2E quantizer config takes int8 weights", _LLM_FLOW),
             Reason("weights:group-wise", "its INT8 weights have one scale per channel or per tensor", _LLM_FLOW),
             Reason("weights:asymmetric", "XNNPACK's INT8 weights are symmetric", "drop symmetric=false")),
    no_ops=("activation dtype other than int8, weight dtype other than int8, reduce_range: built as symmetric int8 "
            "(listed in quantization.ignored_options)",
            "per-tensor dynamic activations: XNNPACK's dynamic activations are per token"))


@dataclass(frozen=True, kw_only=True)
class PteBuildInputs(BuildInputs):
    """What a ``.pte`` build reads: the static-batch program (batch 1) every INT8 program is quantized from, its
    input signature, the target (its XNNPACK quantizer settings and partitioner) and the ``ExecutorchBackendConfig``
    options the target's configure stages chose (e.g. Android's 16 KB segment alignment). Every build is lowered with
    them, so a searched program is exactly the program that ships."""

    static: torch.export.ExportedProgram
    signature: list[TensorSpec]
    target: Target
    backend_config: JSONObject = field(default_factory=dict)
    qat: QatGraph | None = None  # --compress qat: the trained graph is converted instead of calibrated
    progress: Progress | None = field(default=None, compare=False)  # the lowering's stage line (None: quiet)


def lowered_program(cand: Candidate) -> ExecutorchProgramManager:
    """The ExecuTorch program a ``.pte`` candidate was serialized from (the golden-I/O bundle serializes it)."""
    if cand.fmt != "pte" or cand.program is None:
        raise UsageError(f"a {cand.fmt} candidate carries no lowered ExecuTorch program",
                            "build it with get_backend('pte').build(...)")
    return cast("ExecutorchProgramManager", cand.program)  # what _build put there


@register_format
class ExecutorchBackend(FormatBackend):
    name = "pte"
    recipe_support = PTE_SUPPORT

    def preflight(self, state: BuildState) -> None:
        _check_inputs(state)
        # Node and op-type exclusions are honoured by the PT2E quantizer (module paths, FX node names, aten ops;
        # names the graph lacks are refused there); what XNNPACK cannot build is refused here, before any slow work.
        self.check_recipe(self.scheme_recipe(state, state.quant))

    def capture(self, state: BuildState) -> BuildState:
        progress = state.progress or Progress(enabled=False)
        progress.stage("ExecuTorch: exporting with a static batch of 1")
        static = static_export(_captured(state), _calib(state))
        # The float .pte and the golden outputs come from the user's model; INT8 from the prepared copy.
        float_static = static if state.float_captured is None else static_export(state.float_captured, _calib(state))
        progress.stage("ExecuTorch: lowering the float graph to XNNPACK")
        prog, deleg = lower_to_executorch(float_static, state.executorch_backend_config.kwargs(),
                                          state.target.spec(ExecutorchSpec).partitioner)
        (state.workdir / FP32_NAME).write_bytes(prog.buffer)
        art = Artifact(name="pte-fp32", path=FP32_NAME, format="pte", precision="fp32", role="baseline",
                       details={"delegation": deleg, "batch": 1,
                                "backend_config": state.executorch_backend_config.kwargs()}).refresh(state.workdir)
        return state.updated(program=static, float_program=float_static, artifacts=(*state.artifacts, art))

    def scheme(self, state: BuildState) -> QuantOptions:
        return state.quant  # the XNNPACK settings are resolved from the target's [formats.executorch] table in quantize

    def quantize(self, state: BuildState, scheme: QuantOptions) -> BuildState:
        progress = state.progress or Progress(enabled=False)
        recipe = self.scheme_recipe(state, scheme)
        self.check_recipe(recipe)
        calib = _calib(state)
        qat = _captured(state).source.qat
        if qat is not None and (scheme.mode == "dynamic" or scheme.dynamic_linears):
            raise UsageError("--compress qat trains static INT8 activation ranges; --dynamic would discard them",
                             "drop --dynamic (or drop qat from --compress)")
        # built from edgeq.prepare's copy (outlier_prepared); the recipe quantize_pt2e(recipe.to_quant_options())
        # builds again
        inputs = PteBuildInputs(calib=calib, static=_program(state), signature=list(_captured(state).signature),
                                target=state.target, backend_config=state.executorch_backend_config.kwargs(),
                                qat=qat, progress=progress,
                                notes={} if qat is not None else {"outlier_prepared": state.float_captured is not None})
        out = state.workdir / (INT8_NAME if scheme.mode == "static" else INT8_DYNAMIC_NAME)
        if qat is not None:
            progress.stage(f"ExecuTorch: convert_pt2e on the QAT graph ({qat.describe()})")
            cand = self.build(inputs, recipe, out)
        else:
            n = min(len(calib), scheme.max_calibration_samples)
            label = f"calibrating on {n} samples" if scheme.mode == "static" else "dynamic INT8 (no calibration)"
            progress.stage(f"ExecuTorch: PT2E INT8 with the XNNPACK quantizer, {label}")
            with progress.bar(n if scheme.mode == "static" else 0, "calibration") as bar:
                cand = self.build(dataclasses.replace(inputs, on_sample=lambda: bar.update(1)), recipe, out)
        return state.updated(quant=scheme, quantization=cand.record, candidate=cand)

    def emit(self, state: BuildState) -> BuildState:
        """The INT8 ``.pte`` quantize built (lowered with the target's backend config), and its ``.bpte`` bundle."""
        progress = state.progress or Progress(enabled=False)
        cand = state.candidate
        if cand is None or cand.fmt != self.name:
            raise UsageError("the ExecuTorch backend emits after quantize", "call quantize() first")
        progress.stage("ExecuTorch: bundling golden I/O (.bpte)")
        bundle_info = bundle_program(state, state.float_program, lowered_program(cand), cand.path)
        precision = "int8-static" if state.quant.mode == "static" else "int8-dynamic"
        arts = [a.refresh(state.workdir) for a in (
            Artifact(name=f"pte-{precision}", path=cand.path.name, format="pte", precision=precision,
                     role="candidate", quantization=cand.record, details=cand.details),
            Artifact(name="pte-bundled", path=BUNDLE_NAME, format="bpte", precision=precision, role="auxiliary",
                     details={"bundled": bundle_info, "program": cand.path.name}),
        )]
        return state.updated(artifacts=(*state.artifacts, *arts))

    def _build(self, inputs: BuildInputs, recipe: Recipe, out: Path) -> Candidate:
        """PT2E INT8 (or the QAT graph converted), lowered to XNNPACK with ``inputs.backend_config``."""
        if not isinstance(inputs, PteBuildInputs):
            raise UsageError(f"the ExecuTorch backend builds from PteBuildInputs, got {type(inputs).__name__}",
                             "construct edgeq.backends.executorch.PteBuildInputs (the static-batch program)")
        if inputs.qat is not None:
            qep, qinfo = convert_qat(inputs.qat, inputs.calib, inputs.signature)
        else:
            qep, qinfo = quantize_pt2e(inputs.static, inputs.calib, inputs.signature, recipe.to_quant_options(),
                                       inputs.target, on_sample=inputs.on_sample)
        if inputs.progress is not None:
            inputs.progress.stage("ExecuTorch: lowering the INT8 graph to XNNPACK")
        program, delegation = lower_to_executorch(qep, inputs.backend_config,
                                                  inputs.target.spec(ExecutorchSpec).partitioner)
        out.write_bytes(program.buffer)
        config = dict(inputs.backend_config)
        record: JSONObject = {**qinfo, **inputs.notes, "recipe": recipe.to_dict(), "backend_config": config}
        return Candidate("pte", (out,), out.stat().st_size, recipe, record, self.load_runner(),
                         details={"delegation": delegation, "batch": 1, "backend_config": dict(config)},
                         program=program)

    def load_runner(self) -> HostProgram:
        return host_program("pte")


def _captured(state: BuildState) -> Captured:
    if state.captured is None:
        raise UsageError("nothing captured to export", "capture the model first (edgeq.capture.capture)")
    return state.captured


def _program(state: BuildState) -> torch.export.ExportedProgram:
    if state.program is None:
        raise UsageError("no exported program to quantize", "run the .pte backend's export step first")
    return state.program


def _calib(state: BuildState) -> Dataset:
    if state.calib is None:
        raise UsageError("the ExecuTorch backend needs calibration data", "pass --calib")
    return state.calib


def _check_inputs(state: BuildState) -> None:
    captured = _captured(state)
    if captured.source.kind == "onnx" or captured.exported is None:
        raise UsageError(f"--format pte needs a PyTorch model; {captured.source.ref} is an ONNX file",
                         "pass the torch model (pkg.module:factory or a .pt2), or use --format onnx")
    for spec in captured.signature:
        if spec.dtype not in SUPPORTED_INPUT_DTYPES:
            raise DataError(f"input {spec.name!r} has dtype {spec.dtype}, which ExecuTorch .pte inputs do not support",
                            f"use one of {', '.join(SUPPORTED_INPUT_DTYPES)} (e.g. cast token ids to int64)")


def static_export(captured: Captured, calib: Dataset) -> torch.export.ExportedProgram:
    """An ExportedProgram with batch 1: ExecuTorch memory planning and XNNPACK want static shapes."""
    import torch  # heavy: torch, imported only where a model is built or run

    if not captured.dynamic_batch:
        return captured.program()
    module = captured.source.module if captured.source.module is not None else captured.program().module()
    args = sample_args(calib, captured.signature, 0)
    try:
        return torch.export.export(module, args, strict=False)
    except Exception as e:
        raise capture_error(e) from e


def bundle_program(ctx: BuildState, static: torch.export.ExportedProgram | None, program: ExecutorchProgramManager,
                   pte: Path) -> JSONObject:
    """Golden I/O from the float model (``static``) on the first evaluation samples, with tolerances from the INT8
    program ``pte``; ``program`` is its ExecuTorch program, which the bundle serializes."""
    import torch  # heavy: torch, imported only where a model is built or run
    from torch.utils._pytree import tree_flatten

    if static is None:
        raise PipelineError("the .bpte bundle needs the float program (capture runs before emit)")

    ev, captured = ctx.eval if ctx.eval is not None else _calib(ctx), _captured(ctx)
    k = min(DEFAULT_CASES, len(ev))
    float_module = static.module()
    cases, expected = [], []
    with torch.no_grad():
        for i in range(k):
            args = sample_args(ev, captured.signature, i)
            outs, _ = tree_flatten(float_module(*args))
            arrays = [o.detach().numpy().copy() for o in outs]
            cases.append((args, arrays))
            expected.append(arrays)
    inputs = [np.ascontiguousarray(ev.inputs[s.name][:k]) for s in captured.signature]
    got, _ = run_pte(pte, inputs, warmup=0, repeats=0)
    actual = [[got[name][i:i + 1] for name in got] for i in range(k)]
    tol = derive_tolerances(expected, actual)
    write_bundle(program, cases, ctx.workdir / BUNDLE_NAME)
    return {"test_cases": k, "method": "forward", "expected": "float model outputs (torch eager)", **tol,
            "verify": "ExecuTorch bundled IO: verify_result_with_bundled_expected_output(bundle, 'forward', i, rtol, atol)"}
