"""Synthesise the ``/proc/cpuinfo`` an ARM Linux kernel would show for a target's CPU.

onnxruntime's aarch64 build reads ``/proc/cpuinfo`` at import (through pytorch/cpuinfo) to pick its kernels;
under qemu-user it would read the x86 host's file and crash. We bind-mount this text over ``/proc/cpuinfo``
inside a private mount namespace (see ``qemu.py``) so the runtime sees the board it is meant to run on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.errors import TargetError

if TYPE_CHECKING:
    from edgeq.targetspec import CpuSpec


def synthesise(cpu: CpuSpec) -> str:
    """``cpu`` is an ARM target's CPU: one block per core, like the Linux arm64 kernel prints."""
    if cpu.arch != "aarch64":
        raise TargetError(f"cannot synthesise an ARM /proc/cpuinfo for a {cpu.arch} CPU ({cpu.name})",
                          "emulation needs an aarch64 target, e.g. --target raspberry-pi-4")
    missing = [k for k in ("cpuinfo_implementer", "cpuinfo_part") if not getattr(cpu, k)]
    if missing:
        raise TargetError(f"target CPU {cpu.name} lacks {', '.join(missing)} in its [cpu] table",
                          "add the MIDR fields (see targets/raspberry-pi-4.toml) to emulate it")
    block = (
        "BogoMIPS\t: 108.00\n"
        f"Features\t: {' '.join(cpu.features)}\n"
        f"CPU implementer\t: {cpu.cpuinfo_implementer}\n"
        f"CPU architecture: {cpu.cpuinfo_architecture or '8'}\n"
        f"CPU variant\t: {cpu.cpuinfo_variant or '0x0'}\n"
        f"CPU part\t: {cpu.cpuinfo_part}\n"
        f"CPU revision\t: {cpu.cpuinfo_revision or '0'}\n"
    )
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(max(1, int(cpu.cores))))
