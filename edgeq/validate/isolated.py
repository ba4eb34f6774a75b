"""Run one artifact on the host runner in a forked child: a native crash (SIGSEGV/SIGABRT inside onnxruntime or
the ExecuTorch runtime on a corrupt or hostile file) becomes an :class:`ArtifactError`, not the end of edgeq.

The runtime is imported once in this process (import only, no inference, so no thread pool is running when we
fork) and each artifact runs in a fork of it: isolation without paying the runtime's import (seconds for
ExecuTorch) per artifact.

Every child has a deadline (the target profile's ``runner_timeout_s``, or ``--runner-timeout``): a runtime that
hangs (a ``Loop`` with an absurd trip count, a deadlock) is killed with SIGKILL and reported as a
:class:`RunnerError` naming the artifact (exit 3), so ``edgeq check`` and the CI job around it always end.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeq.errors import ArtifactError, EdgeqError, RunnerError, error_class
from edgeq.npz import save_npz
from edgeq.validate.runners.base import RunResult

_OK, _TYPED, _OTHER = 0, 2, 4
_POLL_S = 0.02  # how often the parent looks at a child with a deadline
# Signals a runtime raises itself on a bad file (the artifact's fault); any other signal (SIGKILL from the OOM
# killer or a user) says nothing about the file and is a runner failure.
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
# Runtimes imported once before forking (their runners import them lazily, which each child would repeat).
_PRELOAD = {"pte": ("torch", "executorch.runtime"), "onnx": ("onnxruntime",), "ort": ("onnxruntime",)}


def run_isolated(artifact: Path, fmt: str, inputs: Path, workdir: Path, timeout: float | None,
                 program: Callable[[Path, Path, Path], RunResult]) -> RunResult:
    """``program(artifact, inputs, workdir)`` (a host runner's in-process program) in a forked child."""
    result = workdir / f"{artifact.name}.isolated.json"
    result.unlink(missing_ok=True)

    def work() -> None:
        res = program(artifact, inputs, workdir)
        out = workdir / f"{artifact.name}.isolated.npz"
        save_npz(out, res.outputs)
        result.write_text(json.dumps({"outputs": str(out), "latency_ms": res.latency_ms,
                                      "latency_kind": res.latency_kind, "runtime": res.runtime}))

    run_forked(artifact.name, fmt, work, workdir / f"{artifact.name}.isolated.err.json", timeout)
    info = json.loads(result.read_text())
    with np.load(info["outputs"], allow_pickle=False) as z:
        outputs = {k: z[k] for k in z.files}
    return RunResult(outputs, info["latency_ms"], info["latency_kind"], info["runtime"])


def run_forked(label: str, fmt: str, work: Callable[[], None], err: Path, timeout: float | None = None) -> None:
    """Run WORK (which writes its own result files) in a forked child of this process.

    The format's runtime is imported here first (import only, nothing run, so no thread pool exists when we
    fork). A native crash in the child raises :class:`ArtifactError`; a typed edgeq error raised in the child is
    raised again here with its cause and hint; anything else becomes a :class:`RunnerError` with its last line.
    A child still running after ``timeout`` seconds is killed: :class:`RunnerError`."""
    for mod in _PRELOAD.get(fmt, ()):
        with contextlib.suppress(ImportError):  # not installed: the child reports it as a typed error
            importlib.import_module(mod)
    err.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup

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
    status = wait_child(pid, timeout)
    if status is None:
        raise RunnerError(f"{label}: the {fmt} runtime did not finish within {timeout:g} s; killed",
                          "a hung runtime or a model far slower than expected: raise --runner-timeout SECONDS "
                          "(or runner_timeout_s in the target's [validation]) if the model is just slow")
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        if sig not in _CRASH_SIGNALS:
            raise RunnerError(f"{label}: the {fmt} runtime was killed by {sig.name} from outside edgeq",
                              "out of memory (the kernel's OOM killer sends SIGKILL) or a user's kill; retry")
        raise ArtifactError(f"{label}: the {fmt} runtime crashed ({sig.name}) loading or running it",
                            "the file is corrupt or was tampered with; re-run edgeq export")
    if os.WEXITSTATUS(status) != _OK:
        info = json.loads(err.read_text()) if err.is_file() else {}
        cls = error_class(str(info.get("type")))
        if cls is not None:
            raise cls(str(info.get("cause")), str(info.get("hint") or ""))
        last = (str(info.get("cause") or "no output").strip().splitlines() or [""])[-1][:300]
        raise RunnerError(f"{label}: the host runtime failed: {last}")


def wait_child(pid: int, timeout: float | None = None) -> int | None:
    """Wait for a forked child and return its status, or None when it ran past ``timeout`` (it is then killed and
    reaped). If the wait is interrupted (Ctrl-C, SIGTERM), kill the child first so no runtime keeps running
    behind the parent."""
    try:
        if timeout is None:
            return os.waitpid(pid, 0)[1]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(_POLL_S)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
