"""Run one artifact on the host runner in a forked child: a native crash (SIGSEGV/SIGABRT inside onnxruntime or
the ExecuTorch runtime on a corrupt or hostile file) becomes an :class:`ArtifactError`, not the end of edgeq.

The runtime is imported once in this process (import only, no inference, so no thread pool is running when we
fork) and each artifact runs in a fork of it: isolation without paying the runtime's import (seconds for
ExecuTorch) per artifact.
"""

from __future__ import annotations

import json
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeq.errors import ArtifactError, EdgeqError, RunnerError, error_class
from edgeq.validate.runners.base import RunResult

_OK, _TYPED, _OTHER = 0, 2, 4
# Runtimes imported once before forking (their runners import them lazily, which each child would repeat).
_PRELOAD = {"pte": ("torch", "executorch.runtime"), "onnx": ("onnxruntime",), "ort": ("onnxruntime",)}


def run_isolated(artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
    result = workdir / f"{artifact.name}.isolated.json"
    result.unlink(missing_ok=True)

    def work() -> None:
        from edgeq.validate.runners.host import HostRunner

        res = HostRunner().run(artifact, fmt, inputs, workdir)
        out = workdir / f"{artifact.name}.isolated.npz"
        np.savez(out, **res.outputs)  # type: ignore[arg-type]
        result.write_text(json.dumps({"outputs": str(out), "latency_ms": res.latency_ms,
                                      "latency_kind": res.latency_kind, "runtime": res.runtime}))

    run_forked(artifact.name, fmt, work, workdir / f"{artifact.name}.isolated.err.json")
    info = json.loads(result.read_text())
    with np.load(info["outputs"], allow_pickle=False) as z:
        outputs = {k: z[k] for k in z.files}
    return RunResult(outputs, info["latency_ms"], info["latency_kind"], info["runtime"])


def run_forked(label: str, fmt: str, work: Callable[[], None], err: Path) -> None:
    """Run WORK (which writes its own result files) in a forked child of this process.

    The format's runtime is imported here first (import only, nothing run, so no thread pool exists when we
    fork). A native crash in the child raises :class:`ArtifactError`; a typed edgeq error raised in the child is
    raised again here with its cause and hint; anything else becomes a :class:`RunnerError` with its last line."""
    import contextlib
    import importlib

    for mod in _PRELOAD.get(fmt, ()):
        with contextlib.suppress(ImportError):  # not installed: the child reports it as a typed error
            importlib.import_module(mod)
    err.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup
        import faulthandler

        faulthandler.disable()  # a crash here is expected and reported by the parent; no stack dump
        code = _OTHER
        try:
            work()
            code = _OK
        except EdgeqError as e:
            err.write_text(json.dumps({"type": type(e).__name__, "cause": e.cause, "hint": e.hint}))
            code = _TYPED
        except BaseException:  # noqa: BLE001 - report everything to the parent, then leave
            err.write_text(json.dumps({"type": "", "cause": traceback.format_exc(limit=3)}))
        finally:
            os._exit(code)
    status = wait_child(pid)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ArtifactError(f"{label}: the {fmt} runtime crashed ({name}) loading or running it",
                            "the file is corrupt or was tampered with; re-run edgeq export")
    if os.WEXITSTATUS(status) != _OK:
        info = json.loads(err.read_text()) if err.is_file() else {}
        cls = error_class(str(info.get("type")))
        if cls is not None:
            raise cls(str(info.get("cause")), str(info.get("hint") or ""))
        last = (str(info.get("cause") or "no output").strip().splitlines() or [""])[-1][:300]
        raise RunnerError(f"{label}: the host runtime failed: {last}")


def wait_child(pid: int) -> int:
    """Wait for a forked child and return its status; if the wait is interrupted (Ctrl-C, SIGTERM), kill the child
    first so no runtime keeps running behind the parent."""
    try:
        return os.waitpid(pid, 0)[1]
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
