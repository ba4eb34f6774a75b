"""QAT on real data (scikit-learn digits): the learnt ranges are what ships, and QAT wins back what PTQ loses.

The PTQ baseline is the same quantizer (4-bit per-tensor weights, INT8 activations) calibrated on the same data
without fine-tuning (``--train-steps 0``); both are measured here, so the threshold comes from the gap this run
sees, not from a number written down elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.compress.apply import compress_model
from edgeq.compress.spec import CompressOptions, QatConfig, TrainOptions
from edgeq.data import Dataset
from edgeq.recipe import Recipe

STEPS = 600
SEED = 0


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, np.ndarray, np.ndarray]:
    from edgeq.zoo.digits import digits_arrays

    xtr, ytr, xte, yte = digits_arrays()
    return Dataset({"image": xtr}, ytr, "digits-train"), xte, yte


def _quantized(steps: int, train: Dataset) -> tuple[Any, Any]:
    """(QatGraph, converted torch graph) for 4-bit per-tensor weights after ``steps`` QAT steps (0 = PTQ)."""
    from edgeq.executorch.quantize import convert_qat
    from edgeq.signature import TensorSpec
    from edgeq.zoo.digits import digits_cnn

    handoff: dict[str, Any] = {}
    opts = CompressOptions((QatConfig(bits=4, per_channel=False),), TrainOptions(steps=steps, seed=SEED))
    compress_model(digits_cnn(), opts, train, ["image"], handoff=handoff)
    qat = handoff["qat"]
    spec = TensorSpec("image", "float32", (1, 1, 8, 8))
    qep, info = convert_qat(qat, train, [spec])
    assert info["ranges"]["source"] == "qat" and info["weight_qrange"] == [-8, 7]
    return qat, qep.module()


def _accuracy(module: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        pred = [int(module(torch.from_numpy(x[i:i + 1])).argmax(1)) for i in range(len(x))]
    return float((np.array(pred) == y).mean())


@pytest.mark.slow  # two PT2E exports and 600 fine-tune steps: ~40 s idle, minutes on a loaded host
def test_qat4_recovers_at_least_half_of_what_ptq_loses(digits: tuple[Dataset, np.ndarray, np.ndarray]) -> None:
    from edgeq.zoo.digits import digits_cnn

    train, xte, yte = digits
    acc_float = _accuracy(digits_cnn().eval(), xte, yte)
    ptq_graph, ptq = _quantized(0, train)
    qat_graph, qat = _quantized(STEPS, train)
    acc_ptq, acc_qat = _accuracy(ptq, xte, yte), _accuracy(qat, xte, yte)
    gap = acc_float - acc_ptq
    assert not ptq_graph.trained and qat_graph.trained
    assert gap >= 0.01, f"PTQ lost only {gap:.4f}: not a case where PTQ misses a 1 pt budget"
    assert acc_qat >= acc_ptq + gap / 2, (acc_float, acc_ptq, acc_qat)


@pytest.mark.slow  # one export of both formats: ~30 s idle
def test_export_ships_the_qat_ranges_in_both_formats(tmp_path: Path, digits_npz: Path) -> None:
    import onnx
    from onnx import numpy_helper

    tiny = Path(__file__).resolve().parent / "tiny_models.py"
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", f"{tiny}:tiny_cnn", "--calib", str(digits_npz),
                        "--format", "onnx,pte", "--compress", "qat", "--train-steps", "3", "--train-batch", "16",
                        "--calib-samples", "32", "--min-cosine", "0.5", "--max-accuracy-drop", "100",
                        "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "o" / "edgeq.json").read_text())
    ranges = m["compression"]["steps"][0]["activation_ranges"]
    cands = {a["format"]: a for a in m["artifacts"] if a["role"] == "candidate"}
    assert {f: a["quantization"]["ranges"]["source"] for f, a in cands.items()} == {"onnx": "qat", "pte": "qat"}
    # both recipes say the model was QAT-trained (the recipe's compression steps: the --compress that ran)
    assert {f: Recipe.from_dict(a["quantization"]["recipe"]).compression for f, a in cands.items()} == {
        "onnx": (QatConfig(),), "pte": (QatConfig(),)}
    pinned = cands["onnx"]["quantization"]["fixed_ranges"]
    assert pinned and set(pinned) <= set(ranges)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "o" / "model.int8.onnx")).graph.initializer}
    for name in pinned:  # the shipped QDQ scale / zero point are QAT's, not a re-calibration
        assert float(inits[f"{name}_scale"]) == pytest.approx(ranges[name][0], rel=1e-6)
        assert int(inits[f"{name}_zero_point"]) == ranges[name][1]
