"""``edgeq check`` on a text-generation folder: perplexity re-measured from the folder's files, the budget from the
command line over the recorded one, tampering caught by hashes (2) and a forged float reference by the floor (1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.cli import main
from edgeq.hashing import sha256_file


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "copy"
    shutil.copytree(src, dst)
    return dst


def test_passing_folder_exits_0_and_remeasures(peaked: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(peaked["out"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (art,) = doc["artifacts"]
    ratio = art["validations"][0]["metrics"]["ppl_ratio"]
    recorded = json.loads((peaked["out"] / "edgeq.json").read_text())["artifacts"][0]["validations"][0]["metrics"]
    assert ratio == pytest.approx(recorded["ppl_ratio"], abs=1e-3)  # the same windows, the same runtime
    assert 1.0 < ratio < 1.5
    assert doc["budget"] == {"max_ppl_increase_pct": 50.0, "source": "manifest"}


def test_tightened_budget_on_the_command_line_exits_1(peaked: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(peaked["out"]), "--max-ppl-increase", "0.1"]) == 1
    out = capsys.readouterr()
    assert "budget 0.1 %" in out.out and "the manifest recorded 50.0" in out.out


@pytest.mark.parametrize("victim", ["onnx/onnx-w4g32-emb4/model.onnx.data", "validation/reference.npz",
                                    "validation/inputs.npz", "tokenizer/tokenizer.json"])
def test_tampered_file_exits_2(peaked: dict[str, Path], tmp_path: Path, victim: str) -> None:
    out = _copy(peaked["out"], tmp_path)
    p = out / victim
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    assert main(["check", str(out)]) == 2


def _forge_reference(out: Path, factor: float) -> None:
    """What an editor with write access does: inflate the float NLL and re-hash it in the manifest."""
    ref = out / "validation" / "reference.npz"
    with np.load(ref) as z:
        np.savez(ref, nll=z["nll"] * factor, argmax=z["argmax"])
    m = json.loads((out / "edgeq.json").read_text())
    m["validation_data"]["reference"]["sha256"] = sha256_file(ref)
    (out / "edgeq.json").write_text(json.dumps(m))


def test_inflated_float_reference_is_caught_by_the_floor(peaked: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = _copy(peaked["out"], tmp_path)
    _forge_reference(out, 1.05)  # float PPL x~1.35: the 4-bit model would look 25 % better than float
    assert main(["check", str(out)]) == 1
    assert "reference is not this model's" in capsys.readouterr().out


def test_float_model_on_the_command_line_recomputes_the_reference(peaked: dict[str, Path], tmp_path: Path,
                                                                  tiny_lm: dict[str, Path]) -> None:
    assert main(["check", str(peaked["out"]), "--float-model", str(peaked["model"])]) == 0
    out = _copy(peaked["out"], tmp_path)
    _forge_reference(out, 1.002)  # float PPL x~1.012: small enough to pass the floor; the float model still exposes it
    assert main(["check", str(out)]) == 0
    assert main(["check", str(out), "--float-model", str(peaked["model"])]) == 1
    assert main(["check", str(peaked["out"]), "--float-model", str(tiny_lm["model"])]) == 1  # another model


def test_manifest_task_must_agree_with_the_files(peaked: dict[str, Path], tmp_path: Path) -> None:
    out = _copy(peaked["out"], tmp_path)
    m = json.loads((out / "edgeq.json").read_text())
    m["signature"]["task"] = "classification"  # dodge the LM path: the reference file still holds NLL
    (out / "edgeq.json").write_text(json.dumps(m))
    assert main(["check", str(out)]) == 2


def test_tensor_flags_are_refused_for_lm_folders(peaked: dict[str, Path]) -> None:
    assert main(["check", str(peaked["out"]), "--min-cosine", "0.9"]) == 2
    assert main(["check", str(peaked["out"]), "--on", "emulator"]) == 2


def test_pte_and_onnx_of_the_shared_export_pass(tiny_lm_export: Any, tmp_path: Path) -> None:
    from edgeq.check import check

    res = check(tiny_lm_export.output, max_ppl_increase=1000.0)
    assert res.passed and res.llm is not None
    assert {a.format for a in res.llm.artifacts} == {"onnx", "pte"}
    out = _copy(tiny_lm_export.output, tmp_path)
    pte = next(out.glob("pte/*.pte"))
    data = bytearray(pte.read_bytes())
    data[-100] ^= 0xFF
    pte.write_bytes(bytes(data))
    assert main(["check", str(out)]) == 2
