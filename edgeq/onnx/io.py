"""Writing ONNX files so a failure never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are ordinary readable files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
