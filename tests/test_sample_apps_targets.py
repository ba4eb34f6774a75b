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
from edgeq.targetspec import OnnxScheme

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
    if any(ep in ("NNAPI", "CoreML") for ep in edgeq.load_target(target).spec(OnnxScheme).execution_providers):
        assert io["batch"] == 1 and m["signature"]["inputs"][0]["shape"][0] == "batch"  # the case that crashed
    app = sample_app_dir("raspberry_pi_python") / "edgeq_app.py"
    r = subprocess.run([sys.executable, str(app), str(out), "--allow-failed"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"on {res.manifest['validation_data']['samples']} samples" in r.stdout


def _fields(source: Path) -> list[str]:
    """The `// edgeq.json: a.b[].c` lines each mobile app declares next to the code that reads them."""
    return [line.split("edgeq.json:", 1)[1].strip() for line in source.read_text().splitlines()
            if line.strip().startswith("// edgeq.json:")]


def _resolve(node: object, path: list[str], where: str) -> None:
    if not path:
        return
    head, rest = path[0], path[1:]
    key = head.removesuffix("[]")
    assert isinstance(node, dict) and key in node, f"{where}: no {key!r}"
    value = node[key]
    if head.endswith("[]"):
        assert isinstance(value, list) and value, f"{where}.{key}: not a non-empty list"
        items = value
        if key == "artifacts":  # the apps read the INT8 candidates they pick, per format
            items = [a for a in value if a["role"] == "candidate" and a["format"] in ("onnx", "pte")]
            assert {a["format"] for a in items} == {"onnx", "pte"}
        for item in items:
            _resolve(item, rest, f"{where}.{key}[{item.get('name', '')}]")
    else:
        _resolve(value, rest, f"{where}.{key}")


@pytest.mark.parametrize("app, source", [
    ("android", "app/src/main/java/dev/edgeq/sample/EdgeqManifest.kt"),
    ("ios", "EdgeqSample/Sources/EdgeqSample/EdgeqManifest.swift"),
])
def test_mobile_apps_read_fields_that_a_real_export_has(app: str, source: str, android_export: Path) -> None:
    fields = _fields(sample_app_dir(app) / source)
    assert len(fields) >= 10
    m = json.loads((android_export / "edgeq.json").read_text())
    for f in fields:
        _resolve(m, f.split("."), "edgeq.json")
    pte = next(a for a in m["artifacts"] if a["format"] == "pte" and a["role"] == "candidate")
    assert pte["details"]["io"]["inputs"][0]["preprocessing"]["layout"] == "NCHW"


@pytest.fixture(scope="module")
def android_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """android-arm64, ONNX + .pte, from image folders (so preprocessing is recorded)."""
    import edgeq
    from edgeq.config import SearchOptions
    from edgeq.imagefolder import Preprocess
    from tests.test_imagefolder import _digit_folders

    d = tmp_path_factory.mktemp("android")
    out = d / "out"
    edgeq.export(f"{FIX}:tiny_cnn", calib=str(_digit_folders(d / "calib", 4)), eval=str(_digit_folders(d / "ev", 3, 4)),
                 output=out, target="android-arm64", formats=("onnx", "pte"), validate_on=("host",),
                 search=SearchOptions(mode="off"), preprocess=Preprocess(channels=1, mean=(0.5,), std=(0.5,)),
                 budget=edgeq.Budget(max_accuracy_drop=100.0, min_cosine=0.0))
    return out
