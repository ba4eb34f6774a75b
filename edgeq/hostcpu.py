"""The CPU edgeq itself runs on: architecture and ISA flags, for choices that depend on the host's kernels."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path


def host_arch() -> str:
    """``x86_64`` or ``aarch64`` (``arm64`` on macOS is reported as ``aarch64``)."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


@lru_cache(maxsize=1)
def host_features() -> frozenset[str]:
    """ISA flags from ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM); empty where it does not exist."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return frozenset()
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()
