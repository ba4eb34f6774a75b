"""The ``host-cpp`` runner: validate ``.pte`` files with the native C++ runner — no libtorch, no Python bindings.

It runs the same program a Raspberry Pi or a phone would (``sample_apps/raspberry_pi_cpp``), built against the
installed executorch wheel's C++ runtime. Tensor files and output names come from ``validate/tensor_files.py``,
shared with the emulator and ssh runners, which run the cross-built binary under qemu or on a device.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from edgeq.errors import ArtifactError, RunnerError
from edgeq.executorch.cpp_runner import build_runner
from edgeq.executorch.runtime import check_pte_header
from edgeq.jsontypes import JSONObject, get_float_or_none
from edgeq.targetspec import Target
from edgeq.validate.runners.base import RunResult, parse_result, register_runner
from edgeq.validate.runners.host import host_cpu_name
from edgeq.validate.tensor_files import read_output_tensors, write_input_tensors

TIMEOUT_S = 600.0
LOAD_FAILURE = "cannot load method"  # the runner's message for a corrupt/truncated .pte


def check_returncode(r: subprocess.CompletedProcess[str], artifact: Path, where: str,
                     err: type[Exception] = RunnerError) -> None:
    if r.returncode == 0:
        return
    stderr = (r.stderr or "").strip()
    if LOAD_FAILURE in stderr:
        raise ArtifactError(f"{artifact}: the ExecuTorch C++ runtime cannot load it ({where})",
                            "the file is corrupt or truncated; re-run edgeq export")
    lines = [ln for ln in stderr.splitlines() if "edgeq_runner" in ln or "error" in ln.lower()][-5:]
    raise err(f"{where} failed on {artifact.name} (exit {r.returncode}): {' | '.join(lines)[:500]}",
              "the runner's message is above")


class HostCppRunner:
    name = "host-cpp"

    def __init__(self, target: Target | None = None, timeout: float = TIMEOUT_S) -> None:
        self.target = target
        self.timeout = timeout
        # Build (or find the cached build) now: a missing compiler fails before any slow export work.
        self.binary = build_runner(_native_arch())

    def supports(self, fmt: str) -> bool:
        return fmt == "pte"

    def describe(self) -> JSONObject:
        return {"runner": "host-cpp", "machine": platform.machine(), "cpu_model": host_cpu_name(),
                "features": [], "emulated": False}

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
        if fmt != "pte":
            raise RunnerError(f"the host-cpp runner only executes .pte artifacts, not {fmt!r}",
                              "use the host runner for .onnx")

        check_pte_header(artifact)
        binary = self.binary
        bin_in = workdir / f"{artifact.stem}.cpp.inputs.bin"
        bin_out = workdir / f"{artifact.stem}.cpp.outputs.bin"
        bin_out.unlink(missing_ok=True)
        write_input_tensors(inputs, bin_in)
        cmd = [str(binary), str(artifact), str(bin_in), str(bin_out), "--warmup", "3", "--repeats", "20"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise RunnerError(f"the C++ runner timed out after {self.timeout:.0f} s on {artifact.name}") from e
        check_returncode(r, artifact, "the C++ runner")
        info = parse_result(r.stdout, "the C++ runner")
        return RunResult(read_output_tensors(bin_out, RunnerError, "the C++ runner"), get_float_or_none(info, "latency_ms_median", RunnerError), "host",
                         str(info.get("runtime", "executorch-cpp")), {"load_ms": info.get("load_ms")})


def _native_arch() -> str:
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


@register_runner("host-cpp")
def _factory(spec: str, target: Target) -> HostCppRunner:
    return HostCppRunner(target, getattr(target, "runner_timeout_s", None) or TIMEOUT_S)
