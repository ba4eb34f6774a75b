"""An installed aarch64 emulator environment: where it lives and what is in it (no set-up logic here)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeq.cache import cache_dir
from edgeq.jsontypes import JSONObject

PYTHON = "python3.11"


def root() -> Path:
    """The emulator's folder: ``$EDGEQ_EMULATOR_DIR``, else ``emulator/`` in the user cache."""
    override = os.environ.get("EDGEQ_EMULATOR_DIR")
    if override:
        Path(override).mkdir(parents=True, exist_ok=True)
        return Path(override)
    return cache_dir("emulator")


@dataclass(frozen=True)
class EmulatorEnv:
    """A ready aarch64 environment."""

    path: Path
    qemu: str
    stamp: JSONObject  # stamp.json: what set-up downloaded and every file's hash

    @property
    def sysroot(self) -> Path:
        return self.path / "sysroot"

    @property
    def site(self) -> Path:
        return self.path / "site"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / PYTHON

    @property
    def executorch_root(self) -> Path:
        """The aarch64 wheel's ``executorch/`` folder (lib, include, share/cmake) for cross-building runners."""
        return self.path / "executorch"


def find_qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
