"""The pytest plugin: `--edgeq-check OUTDIR` passes on a passing export folder and fails (listing the budget
failures) on a failing one; the `edgeq_export` fixture exports from inside a user's test."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.conftest import DIGITS_MODEL

pytestmark = pytest.mark.slow


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Installed edgeq registers the plugin through its pytest11 entry point; a source checkout needs -p.
    registered = any(ep.value == "edgeq.pytest_plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "edgeq.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def failing_export(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]) -> Path:
    import edgeq
    from edgeq.config import SearchOptions

    calib, ev = digits_small
    out = tmp_path_factory.mktemp("failing") / "out"
    res = edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), output=out,
                       budget=edgeq.Budget(min_sqnr=90.0), search=SearchOptions(mode="off"))
    assert not res.passed and (out / "edgeq.json").is_file()
    return out


def _user_test(tmp_path: Path, calib: Path, ev: Path) -> Path:
    f = tmp_path / "test_user_model.py"
    f.write_text(
        "def test_int8_digits(edgeq_export):\n"
        f"    res = edgeq_export({DIGITS_MODEL!r}, calib={str(calib)!r}, eval={str(ev)!r},\n"
        "                       budget={'max_accuracy_drop': 5.0})\n"
        "    assert res.passed, res.failures\n"
        "    assert (res.output / 'model.int8.onnx').is_file()\n")
    return f


def test_plugin_passes_a_passing_folder_and_the_fixture(digits_export, digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    user = _user_test(tmp_path, *digits_small)
    r = _pytest(tmp_path, user.name, "--edgeq-check", str(digits_export.output), "--junitxml", str(tmp_path / "j.xml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
    junit = (tmp_path / "j.xml").read_text()
    assert 'failures="0"' in junit and f"edgeq-check[{digits_export.output}]" in junit


def test_plugin_fails_a_failing_folder_cleanly(failing_export: Path, tmp_path: Path) -> None:
    # The budget comes from the command line (a manifest's own budget is never obeyed by the gate).
    r = _pytest(tmp_path, "--edgeq-check", str(failing_export), "--edgeq-check", str(tmp_path / "nope"),
                "--edgeq-min-sqnr", "90")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 failed" in r.stdout
    assert "edgeq check failed" in r.stdout and "SQNR" in r.stdout and "< 90 dB" in r.stdout
    assert "edgeq error" in r.stdout  # the missing folder: a typed error, not a traceback
    assert "Traceback" not in r.stdout + r.stderr
