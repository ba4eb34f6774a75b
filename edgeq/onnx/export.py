"""ExportedProgram -> float ONNX (dynamo exporter), then ONNX Runtime's quantization pre-processing."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import onnx

from edgeq.capture import Captured
from edgeq.errors import CaptureError, QuantizationError
from edgeq.external_data import write_self_contained
from edgeq.onnx.mixed import record_module_map

ONNX_2GB = 2 * 1024**3


def export_float_onnx(captured: Captured, path: Path, opset: int = 18,
                      output_names: list[str] | None = None) -> Path:
    """Write the float ONNX model for ``captured`` to ``path`` (copying it for .onnx sources)."""
    if captured.source.kind == "onnx":
        write_self_contained(captured.source.onnx_file(), path)  # external data, confined, pulled inside
        return path

    import torch  # heavy: torch, imported only where a model is built or run

    # The exporter warns about every torchvision op it cannot register when torchvision is absent: noise.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            program = torch.onnx.export(captured.program(), dynamo=True, opset_version=opset, verbose=False,
                                        optimize=True, output_names=output_names)
    except Exception as e:
        raise CaptureError(f"torch.onnx.export failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}",
                           "an operator may have no ONNX translation at this opset; try --opset 20, or "
                           "export the .onnx yourself and pass it as MODEL") from e
    if program is None:  # dynamo=True always returns a program; None would mean the exporter changed contract
        raise CaptureError("torch.onnx.export returned no program", "report the torch version to edgeq")
    program.save(str(path), external_data=False)
    _strip_node_metadata(path, opset)
    return path


def _strip_node_metadata(path: Path, opset: int | None = None) -> None:
    """Drop the exporter's per-node metadata (stack traces, FX names): it can be ~25 % of a small INT8 file and
    means nothing on a device. The quantizer copies it onto every node it creates, so strip it at the source."""
    model = onnx.load(str(path))
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and got != opset:
        path.unlink(missing_ok=True)
        raise CaptureError(f"--opset {opset} was requested but the exporter produced opset {got}",
                           f"use --opset {got} (the exporter cannot convert this model to {opset})")

    changed = record_module_map(model)  # node -> module path, for mixed precision by torch module
    for graph in [model.graph, *[f for f in model.functions]]:
        for node in graph.node:
            if len(node.metadata_props):
                del node.metadata_props[:]
                changed = True
    if changed:
        onnx.save(model, str(path))


def preprocess(src: Path, dst: Path) -> tuple[Path, str]:
    """ONNX Runtime's recommended pre-quantization step (shape inference + graph optimization).

    Returns the path to use and a note. Symbolic shape inference can fail on exotic graphs; the
    plain ONNX one is tried next, and as a last resort the model is quantized unprocessed (noted).
    """
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = [dict(skip_symbolic_shape=False), dict(skip_symbolic_shape=True)]
    last: Exception | None = None
    for kwargs in attempts:
        try:
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                quant_pre_process(str(src), str(dst), **kwargs)
            note = "quant_pre_process" + (" (symbolic shape inference skipped)" if kwargs["skip_symbolic_shape"] else "")
            return dst, note
        except Exception as e:  # noqa: BLE001  fall through to the next, more conservative attempt
            last = e
    if last is not None and src.stat().st_size > ONNX_2GB:
        raise QuantizationError(f"pre-processing failed on a >2 GB model: {last}")
    return src, f"quant_pre_process failed ({type(last).__name__}); quantized the exported graph as is"
