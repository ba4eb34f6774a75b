"""End to end: `edgeq export --compress` shrinks both formats, records the effect, and `edgeq check` passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.compress.spec import parse_spec
from edgeq.data import Dataset
from edgeq.recipe import Recipe

TINY = Path(__file__).resolve().parent / "tiny_models.py"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_export_compress_both_formats_and_check(tmp_path: Path, digits_npz: Path, digits_train: Dataset) -> None:
    import numpy as np

    ev = tmp_path / "eval.npz"
    np.savez(ev, image=digits_train.inputs["image"][:64], labels=digits_train.labels[:64])
    base = ["export", f"{TINY}:tiny_cnn", "--calib", str(digits_npz), "--eval", str(ev), "--format", "onnx,pte",
            "--no-search", "--min-cosine", "0.5", "--max-accuracy-drop", "100", "--calib-samples", "32"]
    plain = cli(*base, "-o", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    r = cli(*base, "--compress", "prune:0.5", "--train-steps", "3", "--train-data", str(digits_npz),
            "-o", str(tmp_path / "pruned"))
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "pruned" / "edgeq.json").read_text())
    p = json.loads((tmp_path / "plain" / "edgeq.json").read_text())
    c = m["compression"]
    assert m["config"]["compress"]["spec"] == "prune:0.5"
    assert c["steps"][0]["method"] == "prune" and c["params_compressed"] < c["params_float"]
    assert {"cosine", "top1_agreement", "accuracy_original", "accuracy_compressed"} <= set(c["float_eval"])
    sizes = {a["artifact"]: a for a in c["artifacts"]}
    assert all(row["runners"] and row["runners"][0]["latency_ms"] is not None for row in sizes.values())
    plain_bytes = {a["name"]: a["bytes"] for a in p["artifacts"]}
    for name in ("onnx-int8-static", "pte-int8-static"):
        assert sizes[name]["bytes"] < plain_bytes[name]  # channels physically left both formats
    # the reference is the uncompressed float model: the fp32 artifact of a pruned model is not "exact"
    fp32 = next(a for a in m["artifacts"] if a["name"] == "onnx-fp32")
    assert fp32["validations"][0]["metrics"]["cosine_mean"] < 0.99999
    assert "Compression" in (tmp_path / "pruned" / "report.html").read_text()
    # each INT8 candidate's recipe says the model was pruned before quantization, in the compress section's words
    for man, applied in ((m, parse_spec("prune:0.5")), (p, ())):
        cands = [a for a in man["artifacts"] if a["role"] == "candidate"]
        assert sorted(a["format"] for a in cands) == ["onnx", "pte"]
        for a in cands:
            recorded = a["quantization"]["recipe"]
            assert Recipe.from_dict(recorded).compression == applied
            assert recorded.get("compression", {}).get("methods", []) == (c["methods"] if applied else [])
    # check takes its budget from the command line, never from the manifest: give it the same one
    chk = cli("check", str(tmp_path / "pruned"), "--min-cosine", "0.5", "--max-accuracy-drop", "100")
    assert chk.returncode == 0, chk.stdout + chk.stderr


def test_compress_needs_a_torch_factory(tmp_path: Path, digits_npz: Path) -> None:
    import torch
    from tiny_models import tiny_cnn

    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(tiny_cnn(), (torch.rand(1, 1, 8, 8),), str(onnx_path), input_names=["image"], dynamo=False)
    r = cli("export", str(onnx_path), "--calib", str(digits_npz), "--compress", "prune:0.3", "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "needs a PyTorch factory" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # one .pte export whose search ships a trial: ~30 s idle
def test_a_searched_pick_on_a_compressed_model_records_the_compression(tmp_path: Path, outlier_data: Path) -> None:
    """The .pte search replaces the first program (tests/test_pte_search.py's setup, on a model clustered to 256
    values without fine-tuning): the shipped trial's recipe says the model was clustered, as the first one did."""
    import edgeq
    from edgeq.compress.spec import CompressOptions

    fixture = Path(__file__).resolve().parents[1] / "fixture_models.py"
    res = edgeq.export(f"{fixture}:outlier_mlp", calib=str(outlier_data), output=tmp_path / "out", formats=("pte",),
                       budget={"min_cosine": 0.999}, outliers="off",
                       compress=CompressOptions.from_spec("cluster:256", steps=0))
    art = res.artifact("pte-int8-static")
    assert res.manifest["search_pte"]["met"] and art.quantization["search"]["met"]
    recipe = Recipe.from_dict(art.quantization["recipe"])
    assert recipe.compression == parse_spec("cluster:256") and recipe.nodes("float", "float16")
    # every trial's record holds the whole recipe it was built from, the compression included
    for t in res.manifest["search_pte"]["trials"]:
        assert Recipe.from_dict(t["recipe"]).compression == parse_spec("cluster:256")
