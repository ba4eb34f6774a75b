"""ARM emulation: an aarch64 sysroot (Debian arm64 packages + aarch64 wheels) run under qemu-user per CPU model.

``setup()`` prepares everything in the user cache; ``load()`` returns the ready environment or raises
:class:`edgeq.errors.EmulatorError`; ``qemu.run_python()`` runs the emulated python3.11 with a synthesised ARM
``/proc/cpuinfo`` for the target's CPU.
"""

from edgeq.emulator.env import EmulatorEnv
from edgeq.emulator.sysroot import load, setup, status

__all__ = ["EmulatorEnv", "load", "setup", "status"]
