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
def test_android_llm_is_16k_aligned_emulated_and_checked(tiny_lm: dict[str, Path], emulator_env: Any,
                                                         tmp_path: Path) -> None:
    res = _export(tiny_lm, tmp_path / "out", "android-arm64",
                  (Variant("onnx", 8, 32, embedding_bits=0), Variant("pte", 8, 0, activations="dynamic-int8")))
    m = res.manifest
    assert m["target"]["name"] == "android-arm64" and res.passed
    assert [p["name"] for p in m["passes"]] == ["budget-check", "executorch-alignment"]
    arts = {a["format"]: a for a in m["artifacts"]}
    lay = read_layout(tmp_path / "out" / arts["pte"]["path"])  # the custom-SDPA program, on 16 KB pages
    assert lay.segments and not lay.misaligned(16384) and lay.inline_delegates == 0
    budget = {r["artifact"]: r for r in m["passes"][0]["details"]["artifacts"]}
    assert budget[arts["pte"]["name"]]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 64 * 4  # layers, kv heads, dim, ctx
    # the target's CPU is emulated for both formats (the emulated C++ runner has ExecuTorch's llama:: kernels)
    for fmt in ("onnx", "pte"):
        emulated = [v for v in arts[fmt]["validations"] if v.get("emulated")]
        assert emulated and emulated[0]["cpu_model"] == "cortex-a76" and emulated[0]["target"] == "android-arm64"
        assert emulated[0]["metrics"]["decode_tokens_per_s"] > 0
    chk = edgeq.check(tmp_path / "out")
    assert chk.passed, chk.failures


def test_storage_and_kv_cache_ram_checks_fail_over_the_profile(tmp_path: Path) -> None:
    """The target's budget check on an LM folder: folder bytes vs storage_mb, bytes + KV cache vs ram_mb."""
    from edgeq.llm.measure import verdict
    from edgeq.llm.target_checks import KvShape, LmItem, run_checks
    from edgeq.targets import parse_target

    toml = (Path(edgeq.__file__).parent / "profiles" / "raspberry-pi-5.toml").read_text()
    board = parse_target(toml.replace("storage_mb = ", "storage_mb = 1 #").replace("ram_mb = ", "ram_mb = 64 #"),
                         "tiny-board.toml")
    folder = tmp_path / "onnx" / "lm"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"\0" * 1024)
    (folder / "model.onnx.data").write_bytes(b"\0" * (2 * 1024 * 1024))  # the external weights count too
    kv = KvShape(layers=16, kv_heads=8, head_dim=64)
    (row,) = run_checks(board, tmp_path, [LmItem("lm", "onnx", "onnx/lm", "onnx/lm/model.onnx")], kv, 2048)
    art = row["details"]["artifacts"][0]
    assert art["bytes"] == 1024 + 2 * 1024 * 1024 and art["kv_cache_bytes"] == 2 * 16 * 8 * 64 * 2048 * 4
    assert any("storage budget of 1 MB" in f for f in row["failures"])
    assert any("KV cache" in f and "64 MB" in f for f in row["failures"])
    # the same folder inside the budget: no failure; and a failing check fails the export's verdict
    (ok,) = run_checks(edgeq.load_target("raspberry-pi-5"), tmp_path,
                       [LmItem("lm", "onnx", "onnx/lm", "onnx/lm/model.onnx")], kv, 2048)
    assert not ok["failures"]
    assert not verdict({}, [], 1.1, [row])["passed"] and verdict({}, [], 1.1, [])["passed"]


def test_unknown_target_is_refused_before_the_export(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(edgeq.EdgeqError):
        _export(tiny_lm, tmp_path / "out", "no-such-board", (Variant("onnx", 8, 32, embedding_bits=0),))
    assert not (tmp_path / "out").exists()
