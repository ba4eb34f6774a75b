"""The ONNX format backend: float export (torch.onnx, dynamo) -> pre-processing -> QDQ static (or dynamic) INT8."""

from __future__ import annotations

import collections
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgeq.backends.base import BuildInputs, Candidate, FormatBackend, HostProgram, register_format
from edgeq.compress.qat_graph import QatGraph
from edgeq.config import QuantOptions
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject, get_strs
from edgeq.manifest import Artifact
from edgeq.onnx.build import build_onnx_recipe, store_float16_layers
from edgeq.onnx.export import export_float_onnx, preprocess
from edgeq.onnx.quantize import QatGrid, quantize_onnx_static
from edgeq.pipeline.state import BuildState
from edgeq.progress import Progress
from edgeq.recipe import OVERRIDE_KINDS, Reason, Recipe, RecipeSupport
from edgeq.validate.runners.host import host_program

FP32_NAME = "model.fp32.onnx"
INT8_NAME = "model.int8.onnx"
INT8_DYNAMIC_NAME = "model.int8-dynamic.onnx"
PRE_QUANT_NAME = "model.pre_quant.onnx"
PREP_NAME = "model.prep.onnx"


_LLM_FLOW = ("n-bit weights come from the LLM flow (edgeq export --task text-generation: MatMulNBits), or keep "
             "8-bit weights")
# What the ONNX backend builds. A float16 layer stays float with its MatMul/Gemm weight stored in float16 behind a
# Cast (edgeq.onnx.mixed, as the ONNX search's kept linears); ONNX Runtime runs it in float32.
ONNX_SUPPORT = RecipeSupport(
    fmt="onnx", schemes=("static", "dynamic", "hybrid"), override_kinds=OVERRIDE_KINDS,
    weight_types=("int8", "uint8", "int16", "uint16"), compression=True,
    reasons=(Reason("scheme:weight-only", "its INT8 builds quantize activations too (QDQ or dynamic INT8)", _LLM_FLOW),
             Reason("weights:int4", "ONNX Runtime's QDQ and dynamic quantizers take 8- or 16-bit weights", _LLM_FLOW),
             Reason("weights:uint4", "ONNX Runtime's QDQ and dynamic quantizers take 8- or 16-bit weights", _LLM_FLOW),
             Reason("weights:group-wise", "its INT8 weights have one scale per channel or per tensor", _LLM_FLOW),
             Reason("weights:asymmetric", "its INT8 weights are symmetric", "drop symmetric=false")),
    no_ops=("int16 / uint16 weights in a dynamic recipe: quantize_dynamic takes 8-bit weights (built as int8)",
            "int16-activations overrides in a dynamic recipe: dynamic activations are 8-bit (recorded, not built)"))


def _scratch(state: BuildState) -> Path:
    if state.scratch is None:
        raise UsageError("the ONNX backend needs a scratch folder", "build through edgeq.export or build_format")
    return state.scratch


@dataclass(frozen=True, kw_only=True)
class OnnxBuildInputs(BuildInputs):
    """What an ONNX build reads: the pre-processed float graph (``quant_pre_process``) every INT8 model is built
    from, and the calibration set."""

    prepped: Path
    output_names: tuple[str, ...] = ()  # edgeq's canonical output names for the built graph (empty: as exported)
    calibration_cache: Path | None = None  # calibrated ranges shared by builds of one graph, data and method
    qat: QatGraph | None = None  # --compress qat: the trained activation ranges replace calibration


@register_format
class OnnxBackend(FormatBackend):
    name = "onnx"
    recipe_support = ONNX_SUPPORT

    def preflight(self, state: BuildState) -> None:
        if state.captured is None:
            raise UsageError("nothing captured to export", "capture the model first (edgeq.capture.capture)")

    def capture(self, state: BuildState) -> BuildState:
        progress = state.progress or Progress(enabled=False)
        progress.stage("ONNX: exporting the float graph (torch.onnx, dynamo)")
        if state.captured is None:
            raise UsageError("nothing captured to export", "capture the model first (edgeq.capture.capture)")
        float_captured = state.float_captured or state.captured
        fp32 = export_float_onnx(float_captured, state.workdir / FP32_NAME, state.opset, list(state.output_names))
        rename_outputs(fp32, list(state.output_names))
        art = Artifact(name="onnx-fp32", path=FP32_NAME, format="onnx", precision="fp32", role="baseline",
                       details=graph_stats(fp32)).refresh(state.workdir)
        # Graph stages work on a scratch copy; the shipped float model stays the plain export.
        work = _scratch(state) / PRE_QUANT_NAME
        if state.float_captured is not None:  # INT8 is built from the outlier-prepared model
            progress.stage("ONNX: exporting the outlier-prepared graph for quantization")
            export_float_onnx(state.captured, work, state.opset, list(state.output_names))
            rename_outputs(work, list(state.output_names))
        else:
            shutil.copyfile(fp32, work)
        return state.updated(model_path=work, artifacts=(*state.artifacts, art))

    def quantize(self, state: BuildState, scheme: QuantOptions) -> BuildState:
        progress = state.progress or Progress(enabled=False)
        recipe = self.scheme_recipe(state, scheme)
        self.check_recipe(recipe)  # before the pre-processing, too: a refused recipe costs nothing
        if state.model_path is None or state.calib is None:
            raise UsageError("the ONNX backend quantizes after capture", "call capture() first")
        progress.stage("ONNX: pre-processing (onnxruntime quant_pre_process)")
        prepped, prep_note = preprocess(state.model_path, _scratch(state) / PREP_NAME)
        qat = state.captured.source.qat if state.captured is not None else None
        if qat is not None and recipe.scheme != "static":
            raise UsageError("--compress qat trains static INT8 activation ranges; --dynamic would discard them",
                             "drop --dynamic (or drop qat from --compress)")
        if qat is not None:
            # QAT: the trained activation ranges replace calibration; the weights are the QAT-trained ones on the
            # same symmetric grid (per-channel / per-tensor and bits as trained). INT8 activations like XNNPACK's.
            scheme = dataclasses.replace(scheme, per_channel=qat.per_channel, activation_type="int8",
                                         reduce_range=False)
            recipe = self.scheme_recipe(state, scheme)
        # built from edgeq.prepare's copy when outlier_prepared
        inputs = OnnxBuildInputs(calib=state.calib, prepped=prepped, output_names=state.output_names, qat=qat,
                                 notes={"preprocessing": prep_note, "outlier_prepared": state.float_captured is not None})
        out = state.workdir / (INT8_NAME if scheme.mode == "static" else INT8_DYNAMIC_NAME)
        cand = self._first_model(inputs, recipe, out, progress)
        return state.updated(model_path=cand.path, quant=scheme, quantization=cand.record, candidate=cand)

    def _first_model(self, inputs: OnnxBuildInputs, recipe: Recipe, out: Path, progress: Progress) -> Candidate:
        """:meth:`build` with the export's progress lines and calibration bar."""
        if recipe.scheme == "dynamic":
            progress.stage("ONNX: dynamic INT8 quantization")
            return self.build(inputs, recipe, out)
        n = min(len(inputs.calib), recipe.activations.max_calibration_samples)
        if inputs.qat is not None:
            progress.stage(f"ONNX: QDQ with the QAT ranges ({inputs.qat.describe()})")
            label = "calibration (tensors without a QAT range)"
        else:  # (the hybrid too: opts.dynamic_linears)
            progress.stage(f"ONNX: calibrating on {n} samples ({recipe.activations.calibration}) and quantizing "
                           "(QDQ, then bias correction of the linear convs)")
            label = "calibration"
        with progress.bar(n, label) as bar:
            return self.build(dataclasses.replace(inputs, on_sample=lambda: bar.update(1)), recipe, out)

    def _build(self, inputs: BuildInputs, recipe: Recipe, out: Path) -> Candidate:
        if not isinstance(inputs, OnnxBuildInputs):
            raise UsageError(f"the ONNX backend builds from OnnxBuildInputs, got {type(inputs).__name__}",
                             "construct edgeq.backends.onnx.OnnxBuildInputs (the pre-processed float graph)")
        if inputs.qat is not None:
            qinfo = _build_qat(inputs, inputs.qat, recipe, out)
        else:
            qinfo = build_onnx_recipe(inputs.prepped, out, inputs.calib, recipe, on_sample=inputs.on_sample,
                                      calibration_cache=inputs.calibration_cache)
        if inputs.output_names:
            rename_outputs(out, list(inputs.output_names))
        # what this file is built from: building the recipe again gives the same bytes
        record: JSONObject = {**qinfo, **inputs.notes, "recipe": recipe.to_dict()}
        return Candidate("onnx", (out,), out.stat().st_size, recipe, record, self.load_runner())

    def emit(self, state: BuildState) -> BuildState:
        if state.model_path is None:
            raise UsageError("the ONNX backend emits after quantize", "call quantize() first")
        out = state.model_path
        rename_outputs(out, list(state.output_names))
        if out.parent != state.workdir:  # a post-quant stage rewrote it in scratch: ship the rewritten graph
            shutil.copyfile(out, state.workdir / (INT8_NAME if state.quant.mode == "static" else INT8_DYNAMIC_NAME))
            out = state.workdir / (INT8_NAME if state.quant.mode == "static" else INT8_DYNAMIC_NAME)
        precision = "int8-static" if state.quant.mode == "static" else "int8-dynamic"
        art = Artifact(name=f"onnx-{precision}", path=out.name, format="onnx", precision=precision, role="candidate",
                       quantization=state.quantization, details=graph_stats(out)).refresh(state.workdir)
        return state.updated(artifacts=(*state.artifacts, art))

    def load_runner(self) -> HostProgram:
        return host_program("onnx")


def _build_qat(inputs: OnnxBuildInputs, qat: QatGraph, recipe: Recipe, out: Path) -> JSONObject:
    """QDQ with the QAT-trained ranges (calibration only for tensors without one), float16 layers as the recipe
    says."""
    qinfo = quantize_onnx_static(inputs.prepped, out, inputs.calib, recipe.kept_float32().to_quant_options(),
                                 on_sample=inputs.on_sample, qat=QatGrid(qat.activation_ranges, qat.bits))
    qinfo["ranges"] = {"source": "qat", "description": qat.describe(),
                       "activation_ranges_from_qat": len(get_strs(qinfo, "fixed_ranges")),
                       "qat_activation_ranges": len(qat.activation_ranges),
                       "weights": "symmetric min/max of the QAT-trained weights (the QAT weight grid)"}
    fp16 = store_float16_layers(out, recipe)
    if fp16:
        qinfo["fp16_nodes"] = fp16
    return qinfo


def rename_outputs(path: Path, names: list[str]) -> None:
    """Give graph outputs edgeq's canonical names so every format and the reference agree."""
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


def graph_stats(path: Path) -> JSONObject:
    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return {"nodes": sum(ops.values()), "op_counts": dict(sorted(ops.items())),
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)}
