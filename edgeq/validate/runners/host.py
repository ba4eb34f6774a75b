"""Run artifacts on this machine with the same device-side code the remote runners ship.

With a timeout (the target's ``runner_timeout_s``) each run happens in a forked child that is killed when the
deadline passes (``edgeq.validate.isolated``): a hung runtime fails the run instead of hanging edgeq.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeq.errors import ArtifactError, RunnerError
from edgeq.executorch.runtime import executorch_version, load_inputs, run_pte
from edgeq.jsontypes import JSONObject
from edgeq.targetspec import Target
from edgeq.validate.device import run_onnx
from edgeq.validate.isolated import run_isolated
from edgeq.validate.runners.base import RunResult, register_runner


class HostRunner:
    name = "host"

    def __init__(self, target: Target | None = None, timeout: float | None = None) -> None:
        self.target = target
        # None: run in this process (the forked child itself, the paired timing); else the child's deadline
        self.timeout = timeout

    def supports(self, fmt: str) -> bool:
        return fmt in _HOST_PROGRAMS and (fmt != "pte" or _executorch_available())

    def describe(self) -> JSONObject:
        return {"runner": "host", "machine": platform.machine(), "cpu_model": host_cpu_name(),
                "features": [], "emulated": False}

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
        if self.timeout is None:
            return host_program(fmt)(artifact, inputs, workdir)
        return run_isolated(artifact, fmt, inputs, workdir, self.timeout, host_program(fmt))


def _run_onnx(artifact: Path, inputs: Path, workdir: Path) -> RunResult:
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


def _run_pte(artifact: Path, inputs: Path, workdir: Path) -> RunResult:
    # executorch is heavy (it loads torch): imported only when a .pte is run.

    outputs, latency = run_pte(artifact, load_inputs(inputs))
    return RunResult(outputs, latency, "host", f"executorch {executorch_version()}")


# ORT-format flatbuffers (.ort) load into the same InferenceSession as .onnx.
_HOST_PROGRAMS: dict[str, Callable[[Path, Path, Path], RunResult]] = {"onnx": _run_onnx, "ort": _run_onnx,
                                                                      "pte": _run_pte}


def _executorch_available() -> bool:
    return importlib.util.find_spec("executorch") is not None


def host_program(fmt: str) -> Callable[[Path, Path, Path], RunResult]:
    """The program that runs ``fmt`` artifacts on this machine: ``(artifact, inputs.npz, workdir) -> RunResult``."""
    if fmt not in _HOST_PROGRAMS or not HostRunner().supports(fmt):
        raise RunnerError(f"the host runner cannot execute {fmt!r} artifacts",
                          f"supported: {', '.join(f for f in sorted(_HOST_PROGRAMS) if HostRunner().supports(f))}")
    return _HOST_PROGRAMS[fmt]


def host_cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@register_runner("host")
def _factory(spec: str, target: Target) -> HostRunner:
    return HostRunner(target, getattr(target, "runner_timeout_s", None))


os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
