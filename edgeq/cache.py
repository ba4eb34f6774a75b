"""The user cache folder (trained demo weights, emulator sysroot, built runners)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("EDGEQ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgeq")
    p = Path(base, *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
