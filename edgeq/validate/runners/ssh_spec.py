"""A board over ssh: its ``ssh://user@host[:port][/workdir]`` spec, how it is probed, and what an ssh failure
means for it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeq.errors import DeviceError, DeviceUnreachableError, UsageError

# Runs on the device with plain python3: what it is, and whether the ONNX runtime is there.
PROBE_SCRIPT = r"""
import json, platform, sys
d = {"machine": platform.machine(), "python": platform.python_version(), "cpu": "", "features": []}
try:
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k in ("model name", "Model", "Hardware") and not d["cpu"]:
            d["cpu"] = v
        elif k == "CPU part" and not d.get("part"):
            d["part"] = v
        elif k in ("Features", "flags") and not d["features"]:
            d["features"] = v.split()
except OSError:
    pass
try:
    import numpy
    d["numpy"] = numpy.__version__
except Exception as e:
    d["numpy"], d["numpy_error"] = None, f"{type(e).__name__}: {e}"
# onnxruntime is found, not imported: its import costs 0.5 s of CPU on a fast host and seconds on a Pi Zero, and
# a .pte board never needs it (a broken install fails the first ONNX run, with its stderr in the error).
try:
    import importlib.util, re
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("No module named 'onnxruntime'")
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", open(spec.origin).read(), re.M)
    d["onnxruntime"] = m.group(1) if m else "unknown"
except Exception as e:
    d["onnxruntime"], d["onnxruntime_error"] = None, f"{type(e).__name__}: {e}"
print("EDGEQ_RESULT " + json.dumps(d))
"""

# MIDR part numbers of the cores edgeq targets (for a readable cpu_model when cpuinfo has no model name).
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
              "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2"}

_SPEC = re.compile(r"^ssh://(?:(?P<user>[^@/:]+)@)?(?P<host>\[[0-9a-fA-F:]+\]|[^@/:\[\]]+)(?::(?P<port>\d+))?"
                   r"(?P<workdir>/.*)?$")


@dataclass(frozen=True)
class SshSpec:
    user: str | None
    host: str
    port: int
    workdir: str

    @property
    def name(self) -> str:
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}" + (f":{self.port}" if self.port != 22 else "")


def parse_spec(spec: str) -> SshSpec:
    m = _SPEC.match(spec)
    if not m:
        raise UsageError(f"bad ssh runner {spec!r}", "use ssh://user@host[:port][/workdir], e.g. ssh://pi@raspberrypi.local")
    port = int(m["port"] or 22)
    if not 0 < port < 65536:
        raise UsageError(f"bad port {port} in {spec!r}", "ports are 1-65535")
    return SshSpec(m["user"], m["host"].strip("[]"), port, (m["workdir"] or "/tmp").rstrip("/") or "/")


def classify_ssh_error(spec: SshSpec, what: str, err: str) -> DeviceError:
    low = err.lower()
    where = f"{spec.name}: {what}"
    if "permission denied" in low or "too many authentication failures" in low:
        return DeviceError(f"{where}: authentication failed (key-based auth refused)" + tail_of(err),
                           f"install your public key on the device: ssh-copy-id -p {spec.port} "
                           f"{spec.user + '@' if spec.user else ''}{spec.host}; or set EDGEQ_SSH_IDENTITY=KEYFILE")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return DeviceError(f"{where}: the device's host key is unknown or changed" + tail_of(err),
                           "connect once with ssh to accept it, or set EDGEQ_SSH_KNOWN_HOSTS")
    if any(s in low for s in ("connection refused", "no route to host", "could not resolve", "name or service",
                              "network is unreachable", "connection timed out", "operation timed out")):
        return DeviceUnreachableError(f"{where}: the device is unreachable" + tail_of(err),
                                      f"check that it is on, that sshd listens on port {spec.port}, and the address")
    return DeviceUnreachableError(f"{where}: the connection to the device was lost" + tail_of(err),
                                  "the device disconnected mid-run (reboot, power, network); nothing was recorded — retry")


def tail_of(text: str | None, n: int = 6) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return ("; stderr: " + " | ".join(lines[-n:])) if lines else ""
