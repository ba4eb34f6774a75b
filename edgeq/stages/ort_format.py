"""ORT format: ``.ort`` files plus ``required_operators.config`` for an ONNX Runtime reduced (mobile) build.

``onnxruntime.tools.convert_onnx_models_to_ort`` optimizes each shipped ONNX model with ORT itself and saves
the result as an ORT-format flatbuffer, which the minimal mobile runtime (onnxruntime-mobile / a custom
``--minimal_build``) loads without protobuf; the config lists exactly the kernels the models need, to pass to
``build.py --include_ops_by_config`` for a smaller binary. On ARM targets the conversion allows QDQ int8
fusions (``session.qdqisint8allowed``) — the ARM kernels ORT's converter prepares for when told the platform.
All INT8 ONNX candidates are converted together so one config covers them all (fp16: see ``ort_format``).
The files are ``auxiliary`` artifacts: derived and hashed, not validated separately (same graph as the .onnx).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from edgeq.errors import ArtifactError
from edgeq.manifest import Artifact
from edgeq.pipeline.stage import Declares, StageKind, StageResult, register_stage
from edgeq.pipeline.state import BuildState

NAME = "ort-format"
CONFIG_NAME = "required_operators.config"


def convert_to_ort(models: list[Path], outdir: Path, arm: bool) -> tuple[list[Path], Path]:
    """Convert ``models`` into ``outdir``; return the .ort paths (same order) and the operator config path."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    logging.getLogger("ort_format_model").setLevel(logging.WARNING)  # it logs every step at INFO

    with tempfile.TemporaryDirectory(prefix="edgeq-ort-") as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        for m in models:
            shutil.copyfile(m, src / m.name)
        sink = io.StringIO()  # the tool prints a line per step
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            convert_onnx_models_to_ort(src, output_dir=dst, optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform="arm" if arm else "amd64")
        produced = []
        for m in models:
            ort_file = dst / (m.stem + ".ort")
            if not ort_file.is_file():
                raise ArtifactError(f"ONNX Runtime's ORT-format converter produced no {ort_file.name}: {sink.getvalue()[-300:]}")
            shutil.move(str(ort_file), outdir / ort_file.name)
            produced.append(outdir / ort_file.name)
        config = dst / CONFIG_NAME
        if not config.is_file():
            raise ArtifactError(f"ONNX Runtime's ORT-format converter produced no {CONFIG_NAME}")
        # The tool records the absolute paths it converted; name the shipped files instead of a temp folder.
        text = config.read_text().replace(str(dst) + "/", "")
        (outdir / CONFIG_NAME).write_text(text)
    return produced, outdir / CONFIG_NAME


def required_ops(config: Path) -> list[str]:
    """``domain;opset;Op1,Op2`` lines -> ["domain:opset:Op", ...]."""
    out = []
    for line in config.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, ops = line.split(";")[:3]
        out += [f"{domain}:{opset}:{op}" for op in ops.split(",") if op]
    return out


@register_stage(NAME, StageKind.EMITTER, "artifact", formats=("onnx",),
                description=".ort models + required_operators.config for an ONNX Runtime reduced build",
                declares=Declares(reads=("artifacts",), writes=("artifacts",)))
def ort_format(ctx: BuildState) -> StageResult:
    # INT8 candidates only: ORT's CPU optimizer casts an fp16 graph's weights back to fp32 (no fp16 CPU kernels),
    # so an fp16 .ort is twice the .onnx and buys nothing; the fp16 variant is for GPU delegates.
    sources = [a for a in ctx.artifacts if a.format == "onnx" and a.role == "candidate"
               and a.precision.startswith("int8")]
    if not sources:
        return StageResult(NAME, changed=False, summary="no INT8 ONNX candidate to convert")
    # Convert in a scratch folder inside the output, then move: never a half-written .ort in the output.
    stage_dir = Path(tempfile.mkdtemp(prefix=".ort-", dir=ctx.workdir))
    try:
        orts, config = convert_to_ort([ctx.workdir / a.path for a in sources], stage_dir, ctx.target.is_arm)
        new = []
        for a, o in zip(sources, orts, strict=True):
            o.rename(ctx.workdir / o.name)
            art = Artifact(name=a.name.replace("onnx-", "ort-", 1), path=o.name, format="ort", precision=a.precision,
                           role="auxiliary", details={"derived_from": a.name, "onnx_bytes": a.bytes})
            new.append(art.refresh(ctx.workdir))
        config.rename(ctx.workdir / CONFIG_NAME)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    ops = required_ops(ctx.workdir / CONFIG_NAME)
    cfg = Artifact(name="ort-required-operators", path=CONFIG_NAME, format="config", precision="n/a",
                   role="auxiliary", details={"operators": ops, "for": [a.name for a in new]}).refresh(ctx.workdir)
    sizes = ", ".join(f"{a.path} {a.bytes / 1024:.1f} KB" for a in new)
    return StageResult(NAME, changed=True, state=ctx.updated(artifacts=(*ctx.artifacts, *new, cfg)),
                      details={"models": [a.path for a in new], "required_operators": ops,
                               "qdq_int8_fusions": ctx.target.is_arm},
                      summary=f"{sizes}; {CONFIG_NAME} lists {len(ops)} operator(s)")
