"""The CLI as CI uses it: exit codes, messages on stderr, check + JUnit, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DIGITS_MODEL, listing

FIX = Path(__file__).resolve().parent / "fixture_models.py"


def edgeq(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_help_teaches() -> None:
    r = edgeq("--help")
    assert r.returncode == 0 and "exit codes" in r.stdout and "edgeq demo" in r.stdout
    r = edgeq("export", "--help")
    assert r.returncode == 0
    for text in ("pkg.module:factory", "labels", "--max-accuracy-drop", "--calibration", "--dynamic", "--force"):
        assert text in r.stdout, text


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_export_then_check_pass_and_fail(tmp_path: Path, digits_small) -> None:  # type: ignore[no-untyped-def]
    calib, ev = digits_small
    out = tmp_path / "out"
    r = edgeq("-q", "export", DIGITS_MODEL, "--calib", str(calib), "--eval", str(ev), "-o", str(out),
              "--max-accuracy-drop", "2")
    assert r.returncode == 0, r.stderr
    assert "onnx-int8-static" in r.stdout and "verdict: PASS" in r.stdout

    junit = tmp_path / "junit.xml"
    r = edgeq("-q", "check", str(out), "--junit", str(junit))
    assert r.returncode == 0, r.stderr
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 2

    r = edgeq("-q", "check", str(out), "--min-sqnr", "90", "--junit", str(junit))
    assert r.returncode == 1 and "verdict: FAIL" in r.stdout and "SQNR" in r.stdout
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures")) >= 1 and suite.find(".//failure") is not None

    # Tampering with an artifact is an input error (2), not a budget failure.
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    with open(bad / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    r = edgeq("-q", "check", str(bad))
    assert r.returncode == 2 and "does not match the manifest" in r.stderr

    r = edgeq("-q", "check", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "no edgeq.json" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "missing.onnx", "--calib", "x.npz", "-o", "o"], "model file not found"),
        (["export", "nopkg_zz.mod:f", "--calib", "x.npz", "-o", "o"], "cannot import"),
        (["export", f"{FIX}:not_a_module", "--calib", "x.npz", "-o", "o"], "not a torch.nn.Module"),
        (["export", DIGITS_MODEL, "--calib", "missing.npz", "-o", "o"], "data not found"),
        (["export", DIGITS_MODEL, "--calib", "x.npz", "-o", "o", "--target", "pi9"], "unknown target"),
        (["export", DIGITS_MODEL, "--calib", "x.npz", "-o", "o", "--format", "tflite"], "unknown format"),
        (["export", DIGITS_MODEL, "--calib", "x.npz", "-o", "o", "--min-cosine", "3"], "--min-cosine"),
    ],
)
def test_usage_and_input_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    np.savez(tmp_path / "x.npz", image=np.zeros((8, 1, 8, 8), np.float32))
    before = listing(tmp_path)
    r = edgeq(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "edgeq: error:" in r.stderr
    assert "Traceback" not in r.stderr
    assert listing(tmp_path) == before


def interrupt_at(stage: str, sig: int, cwd: Path, *args: str) -> tuple[int, str, int]:
    """Start `edgeq ARGS`, wait until it pauses at `stage` (the EDGEQ_TEST_PAUSE_AT hook: the temporary OUTDIR
    and the scratch folder exist by then), send `sig`, and return (exit code, stderr, pid). No sleeps, no races."""
    from edgeq.outdir import PAUSE_ENV, PAUSE_MARKER

    env = dict(os.environ, PYTHONUNBUFFERED="1", **{PAUSE_ENV: stage})
    proc = subprocess.Popen([sys.executable, "-m", "edgeq.cli", *args], cwd=cwd, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(PAUSE_MARKER):
            break
    else:
        proc.wait(timeout=60)
        raise AssertionError(f"the run never reached {stage!r}:\n{''.join(seen)}")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + err, proc.pid


def test_ctrl_c_leaves_no_partial_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", input=rng.random((40, 1, 8, 8), dtype=np.float32))
    code, err, pid = interrupt_at("computing float reference outputs", signal.SIGINT, tmp_path,
                             "export", f"{FIX}:slow_mlp", "--calib", "c.npz", "-o", "out")
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    assert not list(Path(tempfile.gettempdir()).glob(f"edgeq-scratch-{pid}-*"))
