"""Run one artifact on the host runner in a child process: a native crash (SIGSEGV/SIGABRT inside onnxruntime or
the ExecuTorch runtime on a corrupt or hostile file) becomes an :class:`ArtifactError`, not the end of edgeq.

Child: ``python -m edgeq.validate.isolated FMT ARTIFACT INPUTS WORKDIR RESULT.json``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeq.errors import ArtifactError, EdgeqError, RunnerError
from edgeq.validate.runners.base import RunResult

TIMEOUT_S = 1800.0


def run_isolated(artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
    result = workdir / f"{artifact.name}.isolated.json"
    cmd = [sys.executable, "-m", "edgeq.validate.isolated", fmt, str(artifact), str(inputs), str(workdir), str(result)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise RunnerError(f"{artifact.name}: the host runtime did not finish in {TIMEOUT_S:g} s") from e
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ArtifactError(f"{artifact.name}: the {fmt} runtime crashed ({name}) loading or running it",
                            "the file is corrupt or was tampered with; re-run edgeq export")
    info = json.loads(result.read_text()) if result.is_file() else {}
    if proc.returncode != 0 or "error" in info:
        err = info.get("error") or {}
        cls = _error_class(str(err.get("type")))
        if cls is not None:
            raise cls(str(err.get("cause")), str(err.get("hint") or ""))
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise RunnerError(f"{artifact.name}: the host runtime failed (exit {proc.returncode}): {tail}")
    with np.load(info["outputs"], allow_pickle=False) as z:
        outputs = {k: z[k] for k in z.files}
    return RunResult(outputs, info["latency_ms"], info["latency_kind"], info["runtime"])


def _error_class(name: str) -> type[EdgeqError] | None:
    queue: list[type[EdgeqError]] = [EdgeqError]
    while queue:
        cls = queue.pop()
        if cls.__name__ == name:
            return cls
        queue += cls.__subclasses__()
    return None


def _child(fmt: str, artifact: str, inputs: str, workdir: str, result: str) -> int:
    from edgeq.validate.runners.host import HostRunner

    try:
        res = HostRunner().run(Path(artifact), fmt, Path(inputs), Path(workdir))
    except EdgeqError as e:
        Path(result).write_text(json.dumps({"error": {"type": type(e).__name__, "cause": e.cause, "hint": e.hint}}))
        return 2
    out = Path(workdir) / f"{Path(artifact).name}.isolated.npz"
    np.savez(out, **res.outputs)  # type: ignore[arg-type]
    Path(result).write_text(json.dumps({"outputs": str(out), "latency_ms": res.latency_ms,
                                        "latency_kind": res.latency_kind, "runtime": res.runtime}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:6]))
