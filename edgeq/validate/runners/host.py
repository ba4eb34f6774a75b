"""Run artifacts on this machine with the same device-side code the remote runners ship."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import ArtifactError, RunnerError
from edgeq.validate.runners.base import RunResult, register_runner

_FORMAT_RUNNERS: dict[str, Any] = {}


def register_host_format(fmt: str):  # type: ignore[no-untyped-def]
    """Formats plug their host execution in here (the ExecuTorch path adds ``pte``)."""

    def deco(fn):  # type: ignore[no-untyped-def]
        _FORMAT_RUNNERS[fmt] = fn
        return fn

    return deco


class HostRunner:
    name = "host"

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def supports(self, fmt: str) -> bool:
        _load_format(fmt)
        return fmt in _FORMAT_RUNNERS

    def describe(self) -> dict[str, Any]:
        return {"runner": "host", "machine": platform.machine(), "cpu_model": _host_cpu_name(),
                "features": [], "emulated": False}

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
        _load_format(fmt)
        fn = _FORMAT_RUNNERS.get(fmt)
        if fn is None:
            raise RunnerError(f"the host runner cannot execute {fmt!r} artifacts",
                              f"supported: {', '.join(sorted(_FORMAT_RUNNERS))}")
        return fn(artifact, inputs, workdir)


# Formats whose host execution lives with the format (imported lazily: executorch is heavy and optional).
_LAZY_FORMATS = {"pte": "edgeq.executorch.runtime"}


def _load_format(fmt: str) -> None:
    if fmt in _FORMAT_RUNNERS or fmt not in _LAZY_FORMATS:
        return
    import contextlib
    import importlib

    with contextlib.suppress(ImportError):  # executorch not installed: the format is simply unsupported here
        importlib.import_module(_LAZY_FORMATS[fmt])


@register_host_format("ort")  # ORT-format flatbuffers: the same InferenceSession loads them
@register_host_format("onnx")
def _run_onnx(artifact: Path, inputs: Path, workdir: Path) -> RunResult:
    from edgeq.validate.device import run_onnx

    out = workdir / f"{artifact.stem}.outputs.npz"
    try:
        info = run_onnx.run(str(artifact), str(inputs), str(out))
    except Exception as e:
        msg = str(e)
        if "INVALID_PROTOBUF" in msg or "Protobuf parsing failed" in msg or "Load model" in msg:
            raise ArtifactError(f"{artifact}: onnxruntime cannot load it ({msg[:200]})",
                                "the file is corrupt or truncated; re-run edgeq export") from e
        raise RunnerError(f"onnxruntime failed on {artifact.name}: {type(e).__name__}: {msg[:300]}") from e
    with np.load(out, allow_pickle=False) as z:
        outputs = {k: z[k] for k in z.files}
    return RunResult(outputs, info["latency_ms_median"], "host", info["runtime"])


def _host_cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@register_runner("host")
def _factory(spec: str, target: Any) -> HostRunner:
    return HostRunner(target)


os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
