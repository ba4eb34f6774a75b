"""Capture with ``torch.export``: derive the I/O signature, make example inputs safe, export once for all formats."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.data import Dataset, check_against_signature
from edgeq.errors import CaptureError, ModelSourceError, SignatureMismatchError
from edgeq.signature import TensorSpec
from edgeq.source import ModelSource

if TYPE_CHECKING:
    import torch

_log = logging.getLogger(__name__)

EXAMPLE_BATCH = 2  # torch.export specialises a size-1 dim to a constant, so a dynamic batch needs >= 2


@dataclass
class Captured:
    """The result of capture: the shared starting point of every format backend."""

    source: ModelSource
    signature: list[TensorSpec]
    exported: torch.export.ExportedProgram | None = None  # None for .onnx sources
    dynamic_batch: bool = False
    output_names: list[str] | None = None
    static_batch_reason: str | None = None  # why a dynamic batch could not be exported (recorded in the manifest)

    def program(self) -> torch.export.ExportedProgram:
        """The exported program; only torch sources (a module or a .pt2) have one."""
        if self.exported is None:
            raise CaptureError(f"{self.source.ref} is a {self.source.kind} source: it has no exported torch program")
        return self.exported

    def example_inputs(self, data: Dataset, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Contiguous torch clones of the first ``batch`` samples, in signature order.

        Clones matter: numpy views such as ``x[:, None]`` carry zero strides that ExecuTorch rejects.
        """
        import torch  # heavy: torch, imported only where a model is built or run

        return tuple(torch.from_numpy(np.ascontiguousarray(data.inputs[s.name][:batch]).copy()).contiguous().clone()
                     for s in self.signature)


def infer_signature(source: ModelSource, data: Dataset) -> list[TensorSpec]:
    """The model's declared signature if it has one, else one derived from the data and forward()'s names."""
    if source.declared_signature is not None:
        return source.declared_signature
    specs = []
    names = source.input_names
    if set(names) != set(data.inputs):
        raise SignatureMismatchError(
            f"{data.source}: input names {sorted(data.inputs)} do not match forward({', '.join(names)})",
            "key each array in the .npz by the name of the matching forward() argument",
        )
    for name in names:
        arr = data.inputs[name]
        dtype = {"float64": "float32", "float16": "float32"}.get(str(arr.dtype), str(arr.dtype))
        specs.append(TensorSpec(name, dtype, ("batch", *arr.shape[1:])))
    return specs


def capture(source: ModelSource, calib: Dataset) -> tuple[Captured, Dataset]:
    """Export the model (torch sources) and return it with the calibration data checked against its signature."""
    signature = infer_signature(source, calib)
    calib = check_against_signature(calib, signature)
    if source.kind == "onnx":
        return Captured(source, signature), calib
    if source.kind == "pt2":
        return Captured(source, signature, exported=source.exported,
                        dynamic_batch=isinstance(signature[0].shape[0], str) if signature[0].shape else False), calib
    captured = _export_module(source, signature, calib)
    return captured, calib


def _export_module(source: ModelSource, signature: list[TensorSpec], calib: Dataset) -> Captured:
    import torch  # heavy: torch, imported only where a model is built or run

    module = source.module
    if module is None:
        raise ModelSourceError(f"{source.ref} is a {source.kind} source, not a torch module")
    batch = min(EXAMPLE_BATCH, len(calib))
    base = Captured(source, signature)
    _eager_probe(module, base.example_inputs(calib, 1), signature, calib.source)
    args = base.example_inputs(calib, batch)
    if batch >= 2:
        dim = torch.export.Dim("batch", min=1, max=1 << 16)
        dynamic = tuple({0: dim} for _ in signature)
        try:
            ep = torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
            return Captured(source, signature, exported=ep, dynamic_batch=True)
        except Exception as e:  # noqa: BLE001  a model that pins its batch size still exports with static shapes
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            _log.info("dynamic-batch export failed (%s); exporting with a static batch of 1", reason)
    else:
        reason = f"only {batch} calibration sample(s): no second batch size to export with"
    args = base.example_inputs(calib, 1)
    try:
        ep = torch.export.export(module, args, strict=False)
    except Exception as e:
        raise capture_error(e) from e
    fixed = [TensorSpec(s.name, s.dtype, (1, *s.shape[1:]), s.layout) for s in signature]
    return Captured(source, fixed, exported=ep, dynamic_batch=False, static_batch_reason=reason)


def _eager_probe(module: torch.nn.Module, args: tuple[torch.Tensor, ...], signature: list[TensorSpec], source: str) -> None:
    """Run one sample eagerly first: a shape or dtype that does not fit the model is a data error, and saying so
    beats a torch.export trace about guards."""
    import torch  # heavy: torch, imported only where a model is built or run

    try:
        with torch.no_grad():
            module(*args)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        got = ", ".join(f"{s.name}: {str(a.dtype).removeprefix('torch.')} per-sample shape {tuple(a.shape[1:])}"
                        for s, a in zip(signature, args, strict=True))
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise SignatureMismatchError(f"{source}: the model cannot run on this data ({got}): {first}",
                                     "the shape or dtype of an input does not match what the model expects; check "
                                     "the per-sample shape (first axis = samples) and the dtype") from e


def capture_error(e: Exception) -> CaptureError:
    text = str(e)
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    # Point at the user's line: torch's messages carry "File ..., line N" frames and a user stack.
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    user = [f"{f}:{n}" for f, n in frames if "/torch/" not in f and "site-packages" not in f]
    where = f" at {user[-1]}" if user else ""
    data_dep = any(k in text for k in ("data-dependent", "GuardOnDataDependent", "Could not guard on data-dependent",
                                       "Dynamic control flow", "Could not extract specialized integer"))
    if data_dep:
        hint = ("the model branches on tensor values (e.g. `if x.sum() > 0:`); replace it with torch.where / "
                "torch.cond, or move the decision out of forward()")
        cause = f"torch.export cannot capture data-dependent control flow{where}: {first[:300]}"
    else:
        hint = "see https://pytorch.org/docs/stable/export.html for what torch.export supports"
        cause = f"torch.export failed{where}: {type(e).__name__}: {first[:300]}"
    return CaptureError(cause, hint)
