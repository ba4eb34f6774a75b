"""The Raspberry Pi Python sample app consumes a real export folder through edgeq.json."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

APP = Path(__file__).resolve().parent.parent / "edgeq/sample_apps/raspberry_pi_python/edgeq_app.py"


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, timeout=300)


def test_app_runs_the_int8_artifact_and_reports_accuracy(digits_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_app(str(digits_export.output))
    assert r.returncode == 0, r.stderr
    assert "onnx-int8-static" in r.stdout
    acc = float(r.stdout.split("accuracy:")[1])
    assert acc > 0.9
    x = np.load(digits_export.output / "validation/inputs.npz")["image"][:5]
    np.save(tmp_path / "x.npy", x)
    r = run_app(str(digits_export.output), "--npy", str(tmp_path / "x.npy"))
    assert r.returncode == 0 and "on 5 samples" in r.stdout


def test_app_refuses_tampered_and_failed_exports(digits_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    bad = tmp_path / "tampered"
    shutil.copytree(digits_export.output, bad)
    with open(bad / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    r = run_app(str(bad))
    assert r.returncode == 2 and "does not match edgeq.json" in r.stderr

    failed = tmp_path / "failed"
    shutil.copytree(digits_export.output, failed)
    m = json.loads((failed / "edgeq.json").read_text())
    m["verdict"] = {"passed": False, "failures": ["onnx-int8-static on host: SQNR 30 dB < 40 dB"]}
    (failed / "edgeq.json").write_text(json.dumps(m))
    r = run_app(str(failed))
    assert r.returncode == 1 and "FAILED" in r.stderr and "SQNR" in r.stderr
    assert run_app(str(failed), "--allow-failed").returncode == 0
