"""``--no-explain``: the diagnostics are skipped, what ships is byte for byte the same, and every reader says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.cli import main
from tests.test_cli import FIX


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("noexp") / "calib.npz"
    np.savez(p, image=np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32))
    return p


def _export(calib: Path, out: Path, *extra: str) -> dict[str, object]:
    rc = main(["-q", "export", f"{FIX}:tiny_cnn", "--calib", str(calib), "--no-search", "--outliers", "off",
               *extra, "-o", str(out)])
    assert rc == 0
    return json.loads((out / "edgeq.json").read_text())  # type: ignore[no-any-return]


def test_no_explain_ships_the_same_bytes_and_says_it_skipped(calib: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    full = _export(calib, tmp_path / "full")
    lean = _export(calib, tmp_path / "lean", "--no-explain")
    assert lean["explain"] == {"skipped": "--no-explain"}
    assert full["explain"]["profiles"]  # type: ignore[index]  # the default still measures them
    assert "explain" not in lean["config"]["recorded"]  # type: ignore[index]  # not a rebuild input
    for name in ("model.int8.onnx", "model.fp32.onnx"):  # what ships does not depend on the diagnostics
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "lean" / name).read_bytes(), name
    assert lean["verdict"]["passed"] == full["verdict"]["passed"]  # type: ignore[index]
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "lean")]) == 0
    assert "the export was run with --no-explain" in capsys.readouterr().out
    assert main(["-q", "check", str(tmp_path / "lean")]) == 0  # the sealed folder checks like any other
    # a rebuild from the manifest may skip them too (it changes no recorded input)
    _export_rc = main(["-q", "export", "--config", str(tmp_path / "lean" / "edgeq.json"), "--no-explain",
                       "-o", str(tmp_path / "again")])
    assert _export_rc == 0
    assert (tmp_path / "again" / "model.int8.onnx").read_bytes() == (tmp_path / "lean" / "model.int8.onnx").read_bytes()
