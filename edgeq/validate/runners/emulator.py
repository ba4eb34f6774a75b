"""The ``emulator`` runner: the device-side programs on aarch64 kernels under qemu-user, per target CPU model.

``.onnx`` runs through ``validate/device/run_onnx.py`` (numpy + onnxruntime only) with the emulated python3.11
and the aarch64 wheels; ``.pte`` through the C++ runner cross-built against the aarch64 ExecuTorch runtime.
Latency is qemu's instruction-level time: reported with ``latency_kind="emulated"``, never as device speed.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

from edgeq.emulator import load, qemu
from edgeq.emulator.qemu import cpu_model
from edgeq.errors import ArtifactError, EmulatorError
from edgeq.executorch.cpp_runner import build_runner
from edgeq.jsontypes import JSONObject, get_float_or_none
from edgeq.targetspec import Target
from edgeq.validate.runners.base import RunResult, parse_result, register_runner
from edgeq.validate.tensor_files import read_output_npz, read_output_tensors, write_input_tensors

DEVICE_DIR = Path(str(files("edgeq.validate").joinpath("device")))  # package data, also inside a wheel


class EmulatorRunner:
    name = "emulator"

    def __init__(self, target: Target, timeout: float | None = None) -> None:
        self.target = target
        self.cpu_model = cpu_model(target)  # typed error for a non-ARM target
        self.env = load()  # typed error when not set up
        self.timeout = timeout

    def supports(self, fmt: str) -> bool:
        if fmt == "onnx":
            return True
        if fmt == "pte":
            return pte_runner_available()
        return False

    def describe(self) -> JSONObject:
        return {"runner": "emulator", "machine": "aarch64", "cpu_model": self.cpu_model,
                "features": list(self.target.cpu.features), "emulated": True}

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
        if fmt == "onnx":
            return self._run_onnx(artifact, inputs, workdir)
        if fmt == "pte" and pte_runner_available():
            return self._run_pte(artifact, inputs, workdir)
        raise EmulatorError(f"the emulator runner cannot execute {fmt!r} artifacts",
                            "supported: onnx" + (", pte" if pte_runner_available() else ""))

    # --- ONNX ----------------------------------------------------------------------------------------------

    def _run_onnx(self, artifact: Path, inputs: Path, workdir: Path) -> RunResult:
        out = workdir / f"{artifact.stem}.{self.cpu_model}.outputs.npz"
        out.unlink(missing_ok=True)
        # Few timing repeats: each one is slow under qemu and the number is not device speed anyway.
        args = [str(DEVICE_DIR / "run_onnx.py"), str(artifact), str(inputs), str(out), "--warmup", "1",
                "--repeats", "5"]
        r = qemu.run_python(self.env, self.target, args, timeout=self.timeout, check=False)
        if r.returncode != 0:
            err = r.stderr or ""
            if "INVALID_PROTOBUF" in err or "Protobuf parsing failed" in err:
                raise ArtifactError(f"{artifact}: onnxruntime (aarch64) cannot load it",
                                    "the file is corrupt or truncated; re-run edgeq export")
            raise EmulatorError(f"run_onnx.py failed under qemu -cpu {self.cpu_model} (exit {r.returncode})"
                                + _tail(err), "the runner's stderr is above")
        info = parse_result(r.stdout, f"run_onnx.py under qemu -cpu {self.cpu_model}", EmulatorError)
        outputs = read_output_npz(out, EmulatorError, f"run_onnx.py under qemu -cpu {self.cpu_model}")
        return RunResult(outputs, get_float_or_none(info, "latency_ms_median", EmulatorError), "emulated",
                         f"{info.get('runtime', 'onnxruntime')} aarch64 (qemu {self.cpu_model})",
                         {"latency_ms_all": info.get("latency_ms_all"), "machine": info.get("machine")})

    # --- ExecuTorch ----------------------------------------------------------------------------------------

    def _run_pte(self, artifact: Path, inputs: Path, workdir: Path) -> RunResult:
        """The C++ runner, cross-built against the aarch64 wheel's runtime, on the emulated CPU."""
        binary = build_runner("aarch64", executorch_root=self.env.executorch_root)
        stem = f"{artifact.stem}.{self.cpu_model}"
        inp, out = workdir / f"{stem}.inputs.bin", workdir / f"{stem}.outputs.bin"
        out.unlink(missing_ok=True)
        write_input_tensors(inputs, inp)
        r = qemu.run(self.env, self.target, [str(binary), str(artifact), str(inp), str(out), "--warmup", "1",
                                             "--repeats", "5"],
                     timeout=self.timeout, check=False,
                     extra_env={"LD_LIBRARY_PATH": str(self.env.executorch_root / "lib")})
        if r.returncode != 0:
            err = r.stderr or ""
            if "cannot load method" in err:
                raise ArtifactError(f"{artifact}: the aarch64 ExecuTorch runtime cannot load it" + _tail(err),
                                    "the file is corrupt or truncated; re-run edgeq export")
            raise EmulatorError(f"edgeq_runner failed under qemu -cpu {self.cpu_model} (exit {r.returncode})"
                                + _tail(err), "the runner's stderr is above")
        info = parse_result(r.stdout, f"edgeq_runner under qemu -cpu {self.cpu_model}", EmulatorError)
        outputs = read_output_tensors(out, EmulatorError, f"edgeq_runner under qemu -cpu {self.cpu_model}")
        return RunResult(outputs, get_float_or_none(info, "latency_ms_median", EmulatorError), "emulated",
                         f"{info.get('runtime', 'executorch-cpp')} aarch64 (qemu {self.cpu_model})",
                         {"load_ms": info.get("load_ms")})


def pte_runner_available() -> bool:
    """The .pte path needs the C++ runner sources and their builder (the ExecuTorch feature)."""
    try:
        return importlib.util.find_spec("edgeq.executorch.cpp_runner") is not None
    except ImportError:
        return False


def _tail(text: str | None, n: int = 8) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return ("; stderr: " + " | ".join(lines[-n:])) if lines else ""


@register_runner("emulator")
def _factory(spec: str, target: Target) -> EmulatorRunner:
    return EmulatorRunner(target, getattr(target, "runner_timeout_s", None))
