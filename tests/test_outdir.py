"""The output folder's life cycle: SIGTERM, leftovers of killed runs, --force rules, one export per OUTDIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import OutputExistsError
from edgeq.outdir import commit_output, discard_output, is_edgeq_output, prepare_output
from tests.test_cli import FIX, edgeq, interrupt_at


@pytest.fixture
def calib(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", input=rng.random((40, 1, 8, 8), dtype=np.float32))
    return tmp_path / "c.npz"


def test_sigterm_mid_export_leaves_nothing_and_exits_143(tmp_path: Path, calib: Path) -> None:
    code, err, pid = interrupt_at("computing float reference outputs", signal.SIGTERM, tmp_path,
                                  "export", f"{FIX}:slow_mlp", "--calib", calib.name, "-o", "out")
    assert code == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [calib.name]
    assert not list(Path(tempfile.gettempdir()).glob(f"edgeq-scratch-{pid}-*"))


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_leftovers_of_a_killed_run_are_removed_on_the_next_start(tmp_path: Path, calib: Path) -> None:
    # What SIGKILL leaves: a temporary OUTDIR sibling, a stale lock file and a scratch folder of a dead pid.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".out.edgeq-tmp-{dead_pid}-abcd").mkdir()
    (tmp_path / f".out.edgeq-tmp-{dead_pid}-abcd" / "model.int8.onnx").write_bytes(b"partial")
    (tmp_path / ".out.edgeq-lock").write_text(str(dead_pid))
    scratch = Path(tempfile.gettempdir()) / f"edgeq-scratch-{dead_pid}-zzzz"
    scratch.mkdir(exist_ok=True)
    r = edgeq("export", f"{FIX}:slow_mlp", "--calib", calib.name, "-o", "out", "--no-search", cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [calib.name, "out"]
    assert not scratch.exists()


def test_force_replaces_only_an_edgeq_folder(tmp_path: Path) -> None:
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match="not an edgeq output folder"):
        prepare_output(user, force=True)
    assert (user / "chapter1.tex").read_text() == "years of work"
    # a JSON file named edgeq.json that is not a manifest does not count either
    (user / "edgeq.json").write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(OutputExistsError):
        prepare_output(user, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_force_replaces_a_previous_export(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "edgeq.json").write_text(json.dumps({"schema": "edgeq.manifest"}))
    assert is_edgeq_output(out)
    tmp = prepare_output(out, force=True)
    (tmp / "new").write_text("x")
    commit_output(tmp, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "new").is_file()


def test_force_cli_on_a_users_folder_exits_2_and_deletes_nothing(tmp_path: Path, calib: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    r = edgeq("export", f"{FIX}:slow_mlp", "--calib", calib.name, "-o", "mine", "--force", cwd=tmp_path)
    assert r.returncode == 2 and "not an edgeq output folder" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [calib.name, "mine"]


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_a_second_export_into_the_same_outdir_fails_clearly(tmp_path: Path, calib: Path) -> None:
    """Process A holds OUTDIR (paused by the test hook); process B must fail at once, and A must still finish."""
    from edgeq.outdir import PAUSE_ENV, PAUSE_MARKER

    env = dict(os.environ, PYTHONUNBUFFERED="1", **{PAUSE_ENV: "computing float reference outputs"})
    a = subprocess.Popen([sys.executable, "-m", "edgeq.cli", "export", f"{FIX}:slow_mlp", "--calib", calib.name,
                          "-o", "out", "--no-search"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert a.stderr is not None
        for line in a.stderr:
            if line.startswith(PAUSE_MARKER):
                break
        b = edgeq("export", f"{FIX}:slow_mlp", "--calib", calib.name, "-o", "out", "--no-search", cwd=tmp_path)
        assert b.returncode == 2 and f"(pid {a.pid}) is writing" in b.stderr, b.stderr
    finally:
        a.send_signal(signal.SIGINT)
        a.communicate(timeout=120)
    assert a.returncode == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == [calib.name]


def test_discard_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tmp = prepare_output(out, force=False)
    discard_output(tmp, out)
    tmp2 = prepare_output(out, force=False)  # would raise if the lock were still held
    discard_output(tmp2, out)
    assert list(tmp_path.iterdir()) == []
