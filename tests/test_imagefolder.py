"""A folder of images (one sub-folder per class) as DATA, preprocessed as the flags say, recorded in edgeq.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import DataError
from edgeq.imagefolder import Preprocess, load_image_folder

FIX = Path(__file__).resolve().parent / "fixture_models.py"


def _digit_folders(root: Path, per_class: int, offset: int = 0) -> Path:
    """Real handwritten digits (scikit-learn) written as 8×8 PNGs into DATA/CLASS/."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        idx = np.flatnonzero(d.target == c)[offset:offset + per_class]
        for i in idx:
            Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(root / str(c) / f"{i}.png")
    return root


def test_class_folders_give_labels_and_the_spec_is_applied(tmp_path: Path) -> None:
    root = _digit_folders(tmp_path / "data", 3)
    spec = Preprocess(channels=1, mean=(0.5,), std=(0.25,), resize=16, crop=(12, 12), layout="NHWC")
    inputs, labels, classes = load_image_folder(root, spec, "image")
    x = inputs["image"]
    assert x.shape == (30, 12, 12, 1) and x.dtype == np.float32
    assert classes == [str(c) for c in range(10)] and labels is not None and list(labels[:4]) == [0, 0, 0, 1]
    assert x.min() >= (0 - 0.5) / 0.25 - 1e-6 and x.max() <= (1 - 0.5) / 0.25 + 1e-6
    raw, _, _ = load_image_folder(root, Preprocess(channels=1, dtype="uint8"), "image")
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (30, 1, 8, 8)


@pytest.mark.parametrize("kw, message", [
    ({"layout": "CHW"}, "layout"), ({"mean": (0.1, 0.2)}, "3 channel"), ({"std": (0.0,)}, "must not contain 0"),
    ({"crop": (0, 4)}, "--crop"),
])
def test_bad_specs_are_data_errors(kw: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(DataError, match=message):
        Preprocess(**kw)


def test_mixed_sizes_and_broken_files_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "1.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "a" / "2.png")
    with pytest.raises(DataError, match="different sizes"):
        load_image_folder(tmp_path, Preprocess(), "x")
    (tmp_path / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        load_image_folder(tmp_path, Preprocess(), "x")


@pytest.mark.slow
def test_export_from_image_folders_records_preprocessing(tmp_path: Path) -> None:
    from edgeq.cli import main

    calib = _digit_folders(tmp_path / "calib", 6)
    ev = _digit_folders(tmp_path / "eval", 4, offset=6)
    out = tmp_path / "out"
    rc = main(["-q", "export", f"{FIX}:tiny_cnn", "--calib", str(calib), "--eval", str(ev), "-o", str(out),
               "--grayscale", "--mean", "0.5", "--std", "0.5", "--no-search", "--max-accuracy-drop", "100"])
    assert rc == 0
    m = json.loads((out / "edgeq.json").read_text())
    pre = m["signature"]["inputs"][0]["preprocessing"]
    assert pre["channels"] == 1 and pre["mean"] == [0.5] and pre["std"] == [0.5] and pre["layout"] == "NCHW"
    assert m["validation_data"]["has_labels"] and m["validation_data"]["samples"] == 40
    int8 = next(a for a in m["artifacts"] if a["precision"].startswith("int8"))
    assert int8["details"]["io"]["inputs"][0]["preprocessing"] == pre  # what apps read per artifact
