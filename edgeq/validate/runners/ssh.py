"""The ``ssh`` runner: the same device-side program on a real board (Raspberry Pi or any Linux box) over SSH.

Spec: ``ssh://user@host[:port][/workdir]`` (workdir default ``/tmp``). Per session, one ssh connection: make a
private folder on the device, unpack the artifacts + inputs + ``run_onnx.py`` into it (a tar stream on stdin: no
scp/sftp needed), run them, send the results and outputs back as a tar stream on stdout, remove the folder. A fleet
board runs all its ONNX artifacts in one session (``run_all``); each ``.pte`` has its own. A folder
that a dropped connection left is removed on the next connection (ssh_leftovers). Key-based auth only
(``BatchMode``); every ssh call has a timeout.

Options come from the environment (the spec stays a plain URL): ``EDGEQ_SSH_IDENTITY`` (private key file),
``EDGEQ_SSH_KNOWN_HOSTS``, ``EDGEQ_SSH_CONFIG`` (an ssh_config file, ``ssh -F``), ``EDGEQ_SSH_TIMEOUT`` (seconds
for one run, default 600), ``EDGEQ_SSH_REPEATS`` (timed runs, default 20). Latency on a device is real: the
median of N single-sample runs after warm-up (``latency_kind="device"``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.emulator import load
from edgeq.errors import DeviceError, DeviceUnreachableError
from edgeq.executorch.cpp_runner import build_runner
from edgeq.jsontypes import JSONObject, get_float_or_none, get_strs
from edgeq.targetspec import Target
from edgeq.validate.runners import ssh_leftovers
from edgeq.validate.runners.base import RunResult, parse_result, parse_results, register_runner
from edgeq.validate.runners.emulator import DEVICE_DIR, pte_runner_available
from edgeq.validate.runners.ssh_spec import ARM_PARTS, PROBE_SCRIPT, classify_ssh_error, parse_spec, tail_of
from edgeq.validate.runners.tar_stream import tar_members, tar_of
from edgeq.validate.tensor_files import read_output_npz, read_output_tensors, write_input_tensors

INSTALL_HINT = ("on the device: sudo apt-get install -y python3 python3-pip && "
                "python3 -m pip install onnxruntime numpy  (Raspberry Pi OS: add --break-system-packages or use a venv)")


@dataclass(frozen=True)
class SshOptions:
    """How to reach a board and how long and how often to run there; None: the ``EDGEQ_SSH_*`` environment
    variable (module doc), then the default."""

    identity: str | None = None  # private key file
    known_hosts: str | None = None
    ssh_config: str | None = None  # an ssh_config file (ssh -F)
    timeout: float | None = None  # seconds for one run (default 600)
    connect_timeout: float = 10.0
    repeats: int | None = None  # timed runs (default 20)
    warmup: int = 3


class SshRunner:
    name = "ssh"

    def __init__(self, target: Target, spec: str, options: SshOptions | None = None) -> None:
        o = options or SshOptions()
        self.target = target
        self.spec = parse_spec(spec)
        self.identity = o.identity or os.environ.get("EDGEQ_SSH_IDENTITY")
        self.known_hosts = o.known_hosts or os.environ.get("EDGEQ_SSH_KNOWN_HOSTS")
        self.ssh_config = o.ssh_config or os.environ.get("EDGEQ_SSH_CONFIG")
        self.timeout = o.timeout or float(os.environ.get("EDGEQ_SSH_TIMEOUT", "600"))
        self.connect_timeout = o.connect_timeout
        self.repeats = o.repeats or int(os.environ.get("EDGEQ_SSH_REPEATS", "20"))
        self.warmup = o.warmup
        # A fleet's per-board limit (time.monotonic() seconds): every ssh call ends by then (edgeq.validate.fleet_run).
        self.deadline: float | None = None
        self._probe: JSONObject | None = None

    # --- protocol -------------------------------------------------------------------------------------------

    def supports(self, fmt: str) -> bool:
        return fmt == "onnx" or (fmt == "pte" and pte_runner_available())

    def describe(self) -> JSONObject:
        p = self.probe()
        cpu = p.get("cpu") or ARM_PARTS.get(str(p.get("part", "")).lower(), p.get("part") or "unknown")
        return {"runner": self.spec.name, "machine": p.get("machine", "unknown"), "cpu_model": cpu,
                "features": get_strs(p, "features", DeviceError), "emulated": False}

    def run(self, artifact: Path, fmt: str, inputs: Path, workdir: Path) -> RunResult:
        if fmt == "pte" and self.supports("pte"):
            return self._run_pte(artifact, inputs, workdir)
        if fmt != "onnx":
            raise DeviceError(f"the ssh runner cannot execute {fmt!r} artifacts", "supported: onnx, pte")
        return self._run_onnx([artifact], inputs, workdir)[0]

    def run_all(self, artifacts: Sequence[tuple[Path, str]], inputs: Path, workdir: Path) -> list[RunResult]:
        """A board's whole share, in the given order: its ONNX artifacts in one session (one connection and one
        onnxruntime import on the board, which take seconds on a small board), each ``.pte`` in its own."""
        onnx = [a for a, fmt in artifacts if fmt == "onnx"]
        done = iter(self._run_onnx(onnx, inputs, workdir) if onnx else [])
        return [next(done) if fmt == "onnx" else self.run(a, fmt, inputs, workdir) for a, fmt in artifacts]

    def _run_onnx(self, artifacts: list[Path], inputs: Path, workdir: Path) -> list[RunResult]:
        self._require_onnxruntime()
        models = {f"model{i}.onnx": a for i, a in enumerate(artifacts)}
        outs = [f"outputs{i}.npz" for i in range(len(artifacts))]
        more = "".join(f" --next model{i}.onnx outputs{i}.npz" for i in range(1, len(artifacts)))
        program = (f"python3 run_onnx.py model0.onnx inputs.npz outputs0.npz{more} --warmup {self.warmup} "
                   f"--repeats {self.repeats}")
        infos, blobs = self._session({**models, "inputs.npz": inputs, "run_onnx.py": DEVICE_DIR / "run_onnx.py"},
                                     program, outs, ", ".join(a.name for a in artifacts))
        results, n = [], _samples(inputs)
        for info, out in zip(infos, outs, strict=True):
            with tempfile.NamedTemporaryFile(dir=workdir, suffix=".npz", delete=False) as f:
                f.write(blobs[out])
            try:
                outputs = read_output_npz(Path(f.name), DeviceError, f"{self.spec.name} run_onnx.py")
            finally:
                os.unlink(f.name)
            _check_rows(outputs, n, self.spec.name)
            results.append(RunResult(
                outputs, get_float_or_none(info, "latency_ms_median", DeviceError), "device",
                f"{info.get('runtime', 'onnxruntime')} {info.get('machine', '')} ({self.spec.name})".strip(),
                {"latency_ms_all": info.get("latency_ms_all"), "repeats": self.repeats, "warmup": self.warmup}))
        return results

    def _run_pte(self, artifact: Path, inputs: Path, workdir: Path) -> RunResult:
        """Ship the C++ runner (cross-built for aarch64) with the ExecuTorch runtime libraries it links."""
        machine = self.probe().get("machine")
        if machine != "aarch64":
            raise DeviceError(f"{self.spec.name} is {machine}; edgeq's .pte runner is cross-built for aarch64",
                              "validate the .onnx artifact on this device, or use a 64-bit ARM OS")
        env = load()  # the aarch64 ExecuTorch runtime the runner is built against (EmulatorError if missing)
        binary = build_runner("aarch64", executorch_root=env.executorch_root)
        libs = {f"lib/{p.name}": p for p in sorted((env.executorch_root / "lib").glob("*.so"))}
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            inp = Path(tmp, "inputs.bin")
            write_input_tensors(inputs, inp)
            # EDGEQ_DEVICE_LAUNCHER: an optional prefix set in the device's environment (e.g. taskset).
            program = (f"LD_LIBRARY_PATH=$PWD/lib ${{EDGEQ_DEVICE_LAUNCHER:-}} ./edgeq_runner model.pte inputs.bin "
                       f"outputs.bin --warmup {self.warmup} --repeats {self.repeats}")
            infos, blobs = self._session({"model.pte": artifact, "inputs.bin": inp, "edgeq_runner": binary, **libs},
                                         program, ["outputs.bin"], artifact.name)
            info = infos[0]
            out = Path(tmp, "outputs.bin")
            out.write_bytes(blobs["outputs.bin"])
            outputs = read_output_tensors(out, DeviceError, f"{self.spec.name} edgeq_runner")
        _check_rows(outputs, _samples(inputs), self.spec.name)
        return RunResult(outputs, get_float_or_none(info, "latency_ms_median", DeviceError), "device",
                         f"{info.get('runtime', 'executorch-cpp')} aarch64 ({self.spec.name})",
                         {"load_ms": info.get("load_ms"), "repeats": self.repeats, "warmup": self.warmup})

    def _session(self, files: dict[str, Path], program: str, outputs: list[str],
                 what: str) -> tuple[list[JSONObject], dict[str, bytes]]:
        """One ssh connection: make a private folder, unpack ``files`` into it, run ``program`` there, send back its
        result lines (``result.json``, one per output file) and ``outputs`` as a tar stream, and remove the folder on
        the way out; its time limit is one run's (``EDGEQ_SSH_TIMEOUT``) per output file. Each ssh connection costs
        a key exchange and a process start on the board (0.25 s of CPU measured on a 2-core x86 host between
        loopback peers, more on a small board): once per board share, not once per step."""
        rdir = f"{self.spec.workdir.rstrip('/')}/edgeq-run.{secrets.token_hex(8)}"
        ssh_leftovers.remember(self.spec.name, rdir)  # first: a dropped connection leaves it for the next one
        w, q = shlex.quote(self.spec.workdir), shlex.quote(rdir)
        script = (f"D={q}; umask 077 && mkdir -p {w} && mkdir \"$D\" || exit 1; trap 'cd / && rm -rf \"$D\"' EXIT; "
                  f"cd \"$D\" && tar -x -f - && {program} > result.json && tar -c -f - result.json {' '.join(outputs)}")
        try:
            r = self._ssh(script, stdin=tar_of(files), what=f"running {what}", timeout=self.timeout * len(outputs),
                          check=False)
        except BaseException:
            self._cleanup(q)  # the board may still hold the folder; if it is gone, the next connection removes it
            raise
        ssh_leftovers.forget(self.spec.name, rdir, True)  # ssh returned the script's exit: its trap removed the folder
        name = "run_onnx.py" if "run_onnx.py" in files else "edgeq_runner"
        if r.returncode != 0:
            raise DeviceError(f"{self.spec.name}: {name} failed on {what} (exit {r.returncode})"
                              + tail_of(r.stderr.decode(errors="replace")), "the device's stderr is above")
        blobs = tar_members(r.stdout, ["result.json", *outputs], self.spec.name)
        text = blobs.pop("result.json").decode(errors="replace")
        return parse_results(text, f"{self.spec.name} {name}", len(outputs), DeviceError), blobs

    # --- device facts ---------------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Reach the device before any slow work (called by export/validate for an explicit ssh runner)."""
        self.probe()

    def probe(self) -> JSONObject:
        """Connect once: machine, CPU, python, numpy/onnxruntime (typed errors with install hints)."""
        if self._probe is not None:
            return self._probe
        self._remove_leftovers()
        r = self._ssh("python3 -", stdin=PROBE_SCRIPT.encode(), what="probing the device", check=False)
        err = r.stderr.decode(errors="replace")
        if r.returncode == 127 or ("python3" in err and "not found" in err):
            raise DeviceError(f"{self.spec.name}: python3 is not installed on the device", INSTALL_HINT)
        if r.returncode != 0:
            raise DeviceError(f"{self.spec.name}: python3 failed on the device (exit {r.returncode})" + tail_of(err),
                              INSTALL_HINT)
        self._probe = parse_result(r.stdout.decode(errors="replace"), f"{self.spec.name} probe", DeviceError)
        return self._probe

    def _require_onnxruntime(self) -> None:
        p = self.probe()
        missing = [m for m in ("numpy", "onnxruntime") if not p.get(m)]
        if missing:
            why = "; ".join(f"{m}: {p.get(m + '_error')}" for m in missing)
            raise DeviceError(f"{self.spec.name}: {', '.join(missing)} missing for the device's python3 ({why})",
                              INSTALL_HINT)

    # --- ssh ------------------------------------------------------------------------------------------------

    def ssh_argv(self, command: str) -> list[str]:
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        if self.identity:
            argv += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                 "-p", str(self.spec.port)]
        if self.spec.user:
            argv += ["-l", self.spec.user]
        return [*argv, "--", self.spec.host, command]

    def _ssh(self, command: str, *, what: str, stdin: bytes | None = None, timeout: float | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        t = timeout or max(60.0, self.connect_timeout * 3)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise DeviceUnreachableError(f"{self.spec.name}: the board's time limit ran out before {what}",
                                             "raise --board-timeout for slow boards")
            t = min(t, left)
        try:
            r = subprocess.run(self.ssh_argv(command), input=stdin if stdin is not None else b"",
                               capture_output=True, timeout=t)
        except FileNotFoundError as e:
            raise DeviceError("the ssh client is not installed", "apt-get install -y openssh-client") from e
        except subprocess.TimeoutExpired as e:
            raise DeviceUnreachableError(f"{self.spec.name}: {what} timed out after {t:.0f} s" + tail_of(_s(e.stderr)),
                                         "raise EDGEQ_SSH_TIMEOUT (one run) or --board-timeout (a fleet board's "
                                         "whole share) for slow boards, or check the device") from None
        if r.returncode == 255:  # ssh's own failure: connection or authentication
            raise classify_ssh_error(self.spec, what, r.stderr.decode(errors="replace"))
        if check and r.returncode != 0:
            raise DeviceError(f"{self.spec.name}: {what} failed (exit {r.returncode})"
                              + tail_of(r.stderr.decode(errors="replace")))
        return r

    def _cleanup(self, quoted_dir: str) -> None:
        # Best effort: the device may be gone; then the next connection to it removes the folder (ssh_leftovers).
        removed = False
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            removed = subprocess.run(self.ssh_argv(f"rm -rf {quoted_dir}"), capture_output=True, timeout=30,
                                     input=b"").returncode == 0
        ssh_leftovers.forget(self.spec.name, shlex.split(quoted_dir)[0], removed)

    def _remove_leftovers(self) -> None:
        """Folders that an earlier run lost the connection before removing: gone before this run starts."""
        old = ssh_leftovers.stale(self.spec.name)
        if old:
            self._ssh("rm -rf " + " ".join(shlex.quote(d) for d in old), what="removing folders of a dropped run")
            for d in old:
                ssh_leftovers.forget(self.spec.name, d, True)


def _samples(inputs: Path) -> int:
    """How many samples the validation inputs hold (read once per session, however many artifacts it ran)."""
    with np.load(inputs, allow_pickle=False) as z:
        return int(next(z[k].shape[0] for k in z.files if k != "labels"))


def _check_rows(outputs: dict[str, np.ndarray], n: int, where: str) -> None:
    """A device that returns outputs for a different number of samples (``n``) is broken, not 'inaccurate'."""
    bad = {k: v.shape for k, v in outputs.items() if v.ndim == 0 or v.shape[0] != n}
    if bad:
        raise DeviceError(f"{where}: output shape mismatch from the device: {bad} for {n} input samples",
                          "the device ran a different model or a truncated file; re-run")


def _s(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


@register_runner("ssh")
def _factory(spec: str, target: Target) -> SshRunner:
    return SshRunner(target, spec)

