"""``kill -9`` at each marked point of an export (the EDGEQ_TEST_PAUSE_AT hook): nothing can clean up, so the
next run must. A dead run's lock is an ``flock``, released by the kernel with the process: it never blocks."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.faults.conftest import TINY
from tests.test_cli import edgeq as edgeq_cli
from tests.test_cli import interrupt_at

# Stages an export passes after it took OUTDIR's lock and made its temporary folder, in order.
KILL_POINTS = ("computing float reference outputs", "ONNX: calibrating", "validating", "timing onnx")


@pytest.mark.slow  # five exports of the tiny CNN: ~50 s idle
def test_kill_9_at_every_marked_point_then_the_next_run_starts_clean(tmp_path: Path, tiny_calib: Path) -> None:
    shutil.copy(tiny_calib, tmp_path / "calib.npz")
    (tmp_path / "notes.txt").write_text("the user's own file")
    args = ("export", TINY, "--calib", "calib.npz", "-o", "out", "--no-search")
    pids = []
    for stage in KILL_POINTS:
        # reaching the pause point proves the previous victim's lock and leftovers did not block this run
        code, err, pid = interrupt_at(stage, signal.SIGKILL, tmp_path, *args)
        assert code == -signal.SIGKILL, err[-1000:]
        pids.append(pid)
        left = sorted(p.name for p in tmp_path.iterdir())
        assert "out" not in left, left  # never a partial OUTDIR
        assert any(n.startswith(f".out.edgeq-tmp-{pid}-") for n in left), left  # what SIGKILL leaves
    r = edgeq_cli(*args, cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "notes.txt", "out"]
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"
    for pid in pids:
        assert not list(Path(tempfile.gettempdir()).glob(f"edgeq-scratch-{pid}-*"))
    assert edgeq_cli("check", "out", cwd=tmp_path).returncode == 0
