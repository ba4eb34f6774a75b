"""Format backends: each turns the captured model + calibration data into artifacts in the work folder.

A backend registers itself under a format name (``onnx``, ``pte``); the pipeline calls them in the order the
user listed, sharing one capture and one calibration set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.config import QuantOptions
from edgeq.errors import UsageError
from edgeq.progress import Progress


@dataclass
class BuildContext:
    captured: Any  # edgeq.capture.Captured
    calib: Any  # edgeq.data.Dataset
    eval: Any  # edgeq.data.Dataset
    target: Any  # edgeq.targets.Target
    quant: QuantOptions
    workdir: Path  # the temporary output folder; artifacts are written here, paths recorded relative to it
    scratch: Path  # intermediate files that are not shipped
    progress: Progress
    output_names: list[str]
    opset: int = 18
    pass_log: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


Backend = Callable[[BuildContext], list[Any]]  # returns list[edgeq.manifest.Artifact]
_BACKENDS: dict[str, Backend] = {}
_MODULES = {"onnx": "edgeq.backends.onnx", "pte": "edgeq.backends.executorch"}


def register_format(name: str) -> Callable[[Backend], Backend]:
    def deco(fn: Backend) -> Backend:
        if name in _BACKENDS:
            raise ValueError(f"format {name!r} registered twice")
        _BACKENDS[name] = fn
        return fn

    return deco


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _BACKENDS:
        raise UsageError(f"format {name!r} is not available", f"available: {', '.join(sorted(_MODULES))}")
    return _BACKENDS[name]
