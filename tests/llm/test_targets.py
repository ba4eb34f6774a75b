"""A text-generation export takes ``--target`` like any export: the target's checks apply (storage, RAM with the KV
cache, Android's 16 KB ``.pte`` layout), its CPU is emulated, it runs from ``edgeq.export()``, and ``edgeq check``
re-runs the checks from the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import edgeq
from edgeq.executorch.layout import read_layout
from edgeq.llm.config import Variant


def _export(tiny_lm: dict[str, Path], out: Path, target: str, variants: tuple[Variant, ...]) -> Any:
    return edgeq.export(str(tiny_lm["model"]), str(tiny_lm["calib"]), out, task="text-generation",
                        eval=str(tiny_lm["eval"]), target=target, formats=tuple(sorted({v.format for v in variants})),
                        variants=variants, seq_len=32, max_context=64, calib_windows=2, eval_windows=2,
                        greedy_prompts=1, greedy_tokens=4, max_ppl_increase=1000.0)


@pytest.mark.slow
@pytest.mark.emulator
def test_android_llm_pte_is_16k_aligned_emulated_and_checked(tiny_lm: dict[str, Path], emulator_env: Any,
                                                              tmp_path: Path) -> None:
    res = _export(tiny_lm, tmp_path / "out", "android-arm64", (Variant("pte", 8, 0, activations="dynamic-int8"),))
    m = res.manifest
    assert m["target"]["name"] == "android-arm64" and res.passed
    names = [p["name"] for p in m["passes"]]
    assert names == ["budget-check", "executorch-alignment"]
    art = m["artifacts"][0]
    lay = read_layout(tmp_path / "out" / art["path"])
    assert lay.segments and not lay.misaligned(16384) and lay.inline_delegates == 0
    budget = m["passes"][0]["details"]["artifacts"][0]
    assert budget["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 64 * 4  # layers x kv heads x head dim x context x fp32
    emulated = [v for v in art["validations"] if v.get("emulated")]
    assert emulated and emulated[0]["cpu_model"] == "cortex-a76" and emulated[0]["target"] == "android-arm64"
    chk = edgeq.check(tmp_path / "out")
    assert chk.passed, chk.failures


@pytest.mark.slow
def test_a_target_whose_storage_the_lm_exceeds_fails_export_and_check(tiny_lm: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    toml = (Path(edgeq.__file__).parent / "profiles" / "raspberry-pi-5.toml").read_text()
    tiny = tmp_path / "tiny-board.toml"
    tiny.write_text(toml.replace('name = "raspberry-pi-5"', 'name = "tiny-board"').replace(
        "storage_mb = ", "storage_mb = 0 #"))
    res = _export(tiny_lm, tmp_path / "out", str(tiny), (Variant("onnx", 8, 32, embedding_bits=0),))
    assert res.manifest["target"]["name"] == "tiny-board" and not res.passed
    assert any("storage budget" in f for f in res.failures)
    # check recomputes it from the bytes and the profile given on the command line, not from the manifest
    chk = edgeq.check(tmp_path / "out", target=str(tiny))
    assert not chk.passed and any("storage budget" in f for f in chk.failures)


def test_unknown_target_is_refused_before_the_export(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(edgeq.EdgeqError):
        _export(tiny_lm, tmp_path / "out", "no-such-board", (Variant("onnx", 8, 32, embedding_bits=0),))
    assert not (tmp_path / "out").exists()
