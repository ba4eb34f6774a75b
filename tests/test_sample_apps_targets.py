"""The Pi Python app runs any target's export: it feeds what each artifact declares in ``details.io`` (the batch is
fixed at 1 on NNAPI/CoreML targets while the source signature says dynamic), and the fields the Android and iOS
apps read exist in a real export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeq.resources import sample_app_dir
from edgeq.targets import list_targets

pytestmark = pytest.mark.slow
FIX = Path(__file__).resolve().parent / "fixture_models.py"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tiny")
    calib, ev = digits_small
    with np.load(calib) as z:
        np.savez(d / "calib.npz", image=z["image"][:48], labels=z["labels"][:48])
    with np.load(ev) as z:
        np.savez(d / "eval.npz", image=z["image"][:40], labels=z["labels"][:40])
    return d / "calib.npz", d / "eval.npz"


@pytest.mark.parametrize("target", list_targets())
def test_pi_app_runs_every_targets_export(target: str, tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    import edgeq
    from edgeq.config import SearchOptions

    calib, ev = tiny_data
    out = tmp_path / "out"
    res = edgeq.export(f"{FIX}:tiny_cnn", calib=str(calib), eval=str(ev), output=out, target=target,
                       formats=("onnx",), validate_on=("host",), search=SearchOptions(mode="off"),
                       budget=edgeq.Budget(max_accuracy_drop=100.0, min_cosine=0.0))
    m = json.loads((out / "edgeq.json").read_text())
    cand = next(a for a in m["artifacts"] if a["format"] == "onnx" and a["precision"].startswith("int8"))
    io = cand["details"]["io"]["inputs"][0]
    assert io["name"] == "image" and io["dtype"] == "float32" and io["shape"][1:] == [1, 8, 8]
    if any(ep in ("NNAPI", "CoreML") for ep in edgeq.load_target(target).onnx.execution_providers):
        assert io["batch"] == 1 and m["signature"]["inputs"][0]["shape"][0] == "batch"  # the case that crashed
    app = sample_app_dir("raspberry_pi_python") / "edgeq_app.py"
    r = subprocess.run([sys.executable, str(app), str(out), "--allow-failed"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"on {res.manifest['validation_data']['samples']} samples" in r.stdout
