"""Run aarch64 programs under ``qemu-aarch64-static -cpu MODEL`` with an ARM ``/proc/cpuinfo`` for that CPU.

The cpuinfo is bind-mounted over ``/proc/cpuinfo`` inside a private mount namespace (``unshare -m`` as root,
``unshare -rm`` otherwise): the host's file is never touched, and the mount disappears with the process.
Every run has a timeout; on expiry the whole process group is killed and the error carries qemu's stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from pathlib import Path

from edgeq.emulator.cpuinfo import synthesise
from edgeq.emulator.env import EmulatorEnv, root
from edgeq.errors import EmulatorError, TargetError
from edgeq.hashing import sha256_bytes
from edgeq.targetspec import Target

DEFAULT_TIMEOUT = float(os.environ.get("EDGEQ_EMULATOR_TIMEOUT", "600"))
# In the mount namespace: put the ARM cpuinfo in place, then become qemu ("$0" is the cpuinfo file).
_MOUNT_AND_EXEC = 'mount --bind "$0" /proc/cpuinfo && exec "$@"'


def cpu_model(target: Target | None) -> str:
    if target is None or not getattr(target, "is_arm", False) or not target.cpu.qemu_model:
        name = getattr(target, "name", None)
        raise TargetError(f"target {name!r} has no ARM CPU model to emulate",
                          "pick an aarch64 target, e.g. --target raspberry-pi-4 (see `edgeq targets`)")
    return target.cpu.qemu_model


def cpuinfo_file(target: Target) -> Path:
    """The synthesised cpuinfo for ``target`` in the cache (content-addressed, written atomically)."""
    text = synthesise(target.cpu)
    d = root() / "cpuinfo"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{cpu_model(target)}-{sha256_bytes(text.encode())[:10]}.txt"
    if not p.is_file():
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, p)
    return p


def namespace_prefix() -> list[str]:
    # Root gets a plain private mount namespace; anyone else maps themselves to root in a user namespace first.
    return ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]


def command(env: EmulatorEnv, target: Target, program: list[str]) -> list[str]:
    """The full argv that runs ``program`` (an aarch64 path + args) as ``target``'s CPU."""
    return [*namespace_prefix(), "sh", "-c", _MOUNT_AND_EXEC, str(cpuinfo_file(target)),
            env.qemu, "-cpu", cpu_model(target), "-L", str(env.sysroot), *program]


def python_command(env: EmulatorEnv, target: Target) -> list[str]:
    """argv prefix of the emulated python3.11; append a script and its arguments."""
    return command(env, target, [str(env.python)])


def launcher(env: EmulatorEnv, target: Target) -> str:
    """A shell script that runs any aarch64 program given as its arguments on ``target``'s emulated CPU."""
    argv = " ".join(shlex.quote(a) for a in command(env, target, []))
    return (f"#!/bin/sh\n# edgeq: run an aarch64 program on emulated {target.cpu.name} ({cpu_model(target)}) "
            f"kernels\nexec {argv} \"$@\"\n")


def python_wrapper(env: EmulatorEnv, target: Target) -> str:
    """A ``python3`` shell wrapper that is the emulated aarch64 python of ``target`` (e.g. on an sshd's PATH)."""
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in guest_env(env).items())
    argv = " ".join(shlex.quote(a) for a in python_command(env, target))
    return (f"#!/bin/sh\n# edgeq: python3 on emulated {target.cpu.name} ({cpu_model(target)}) kernels\n"
            f"{exports}exec {argv} \"$@\"\n")


def guest_env(env: EmulatorEnv, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment (qemu hands it to the guest): nothing from the host's python or venv leaks in."""
    e = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/tmp"),
         "PYTHONPATH": str(env.site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
         "ORT_LOGGING_LEVEL": "3"}
    e.update(extra or {})
    return e


def run(env: EmulatorEnv, target: Target, program: list[str], *, timeout: float | None = None,
        cwd: Path | None = None, extra_env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an aarch64 program; raise EmulatorError on timeout, crash (signal) or — with ``check`` — any failure."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    argv = command(env, target, program)
    where = f"qemu -cpu {cpu_model(target)}"
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                env=guest_env(env, extra_env), start_new_session=True)
    except FileNotFoundError as e:
        raise EmulatorError(f"cannot start the emulator: {e.filename} not found",
                            "install util-linux (unshare) and qemu-user-static; see `edgeq emulator status`") from e
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise EmulatorError(f"{where} timed out after {timeout:.0f} s running {_what(program)}"
                            + _tail(err), "a hung runtime, or a large model: raise --runner-timeout SECONDS (or runner_timeout_s "
                            "in the target profile)") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    r = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if proc.returncode < 0 or proc.returncode >= 128 or "uncaught target signal" in (err or ""):
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        raise EmulatorError(f"{where} crashed ({name}) running {_what(program)}" + _tail(err), _crash_hint(err))
    if check and proc.returncode != 0:
        raise EmulatorError(f"{where}: {_what(program)} exited with {proc.returncode}" + _tail(err))
    return r


def run_python(env: EmulatorEnv, target: Target, args: list[str], *, timeout: float | None = None,
               cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The emulated python3 with ``args`` (see :func:`run`)."""
    return run(env, target, [str(env.python), *args], timeout=timeout, cwd=cwd, check=check)


def _what(program: list[str]) -> str:
    return " ".join(Path(a).name for a in program[:2])


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(err: str | None, n: int = 8) -> str:
    lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
    return ("; stderr: " + " | ".join(lines[-n:])) if lines else "; no stderr"


def _crash_hint(err: str | None) -> str:
    if err and "mount" in err and ("permission" in err.lower() or "denied" in err.lower()):
        return ("the private mount namespace for the ARM /proc/cpuinfo could not be made; run as root, or allow "
                "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    return "the artifact or runtime crashed on the emulated CPU; try another --target CPU or report it"
