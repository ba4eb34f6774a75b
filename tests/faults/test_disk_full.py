"""A full disk during an export, for real: the export runs in a child whose file size limit (RLIMIT_FSIZE) is
smaller than the models it writes, with SIGXFSZ ignored, so each write past the limit fails with EFBIG exactly as
a write to a full disk fails with ENOSPC. The run must end with a typed error, leave nothing partial, and keep the
user's previous export and files."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgeq.errors import StorageError, storage_error
from edgeq.hashing import sha256_file
from tests.faults.conftest import TINY

LIMIT_BYTES = 8_000  # the tiny CNN's float ONNX model is ~12 KB


def _full_disk() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored signals stay ignored across exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_mid_export_is_typed_and_keeps_the_previous_export(tmp_path: Path, tiny_export: Path,
                                                                       tiny_calib: Path) -> None:
    shutil.copytree(tiny_export, tmp_path / "out")  # the user's previous export, replaced only on success
    shutil.copy(tiny_calib, tmp_path / "calib.npz")
    (tmp_path / "notes.txt").write_text("the user's own file")
    before = _hashes(tmp_path)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.Popen([sys.executable, "-m", "edgeq.cli", "export", TINY, "--calib", "calib.npz", "-o", "out",
                          "--force", "--no-search"], cwd=tmp_path, env=env, preexec_fn=_full_disk,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = r.communicate(timeout=900)
    assert r.returncode in (2, 3), err[-2000:]
    assert "edgeq: error:" in err and "internal error" not in err and "Traceback" not in err, err[-2000:]
    assert "File too large" in err or "no room to write" in err, err[-2000:]
    assert _hashes(tmp_path) == before  # previous export and user files byte for byte, nothing added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "notes.txt", "out"]
    assert not list(Path(tempfile.gettempdir()).glob(f"edgeq-scratch-{r.pid}-*"))


@pytest.mark.parametrize("wrap", [False, True])
def test_a_full_disk_behind_a_library_error_is_still_a_storage_error(wrap: bool) -> None:
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", "/out/model.onnx")
    e: BaseException = full
    if wrap:  # what torch.onnx / onnxruntime do: raise their own error from the OSError
        try:
            try:
                raise full
            except OSError as inner:
                raise RuntimeError("serialization failed") from inner
        except RuntimeError as outer:
            e = outer
    typed = storage_error(e)
    assert isinstance(typed, StorageError) and typed.exit_code == 3
    assert "writing /out/model.onnx" in typed.cause
    assert storage_error(ValueError("x")) is None
