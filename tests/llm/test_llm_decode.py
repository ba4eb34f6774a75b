"""Decoding through the KV cache: re-decoding a position gives the same logits in both formats (what the
flat-decode benchmark relies on), and on an emulated Cortex-A76 the shipped artifacts decode the same tokens as
on the host, with tokens/s recorded as emulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.errors import TargetError
from edgeq.llm.runners import OnnxLM, PteLM


def _runner(res: Any, fmt: str) -> tuple[Any, Path]:
    art = next(a for a in res.manifest["artifacts"] if a["format"] == fmt)
    path = res.output / art["details"]["folder"]
    return (OnnxLM(path) if fmt == "onnx" else PteLM(path)), path


def _ids(res: Any) -> np.ndarray:
    return np.asarray(np.load(res.output / "validation" / "inputs.npz")["eval_windows"].reshape(-1))


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_redecoding_a_position_rewinds_the_cache(tiny_lm_export: Any, fmt: str) -> None:
    runner, _ = _runner(tiny_lm_export, fmt)
    ids = _ids(tiny_lm_export)[:24]
    runner.reset()
    runner.forward(ids[:20], 0)
    first = runner.forward(ids[20:21], 20)
    runner.forward(ids[21:23], 21)  # the cache moves on ...
    again = runner.forward(ids[20:21], 20)  # ... and position 20 is decoded again from the 20-token prefix
    np.testing.assert_allclose(again, first, atol=1e-4, rtol=1e-4)


def test_decode_curve_rows_cover_the_positions(tiny_lm_export: Any) -> None:
    from bench.llm_decode import decode_curve

    runner, _ = _runner(tiny_lm_export, "onnx")
    rows = decode_curve(runner, _ids(tiny_lm_export), [4, 16, 40], repeats=1)
    assert [r["position"] for r in rows] == [4, 16, 40]
    assert all(r["cache_ms"] > 0 and r["rerun_ms"] > 0 for r in rows)  # shape only: no timing asserted


def test_interleaved_decode_comparison_reports_every_artifact(tiny_lm_export: Any) -> None:
    from bench.llm_decode import interleaved

    runners = {fmt: _runner(tiny_lm_export, fmt)[0] for fmt in ("onnx", "pte")}
    got = interleaved(runners, _ids(tiny_lm_export), prompt=8, steps=4, rounds=2)
    assert set(got["decode_tokens_per_s"]) == {"onnx", "pte"} and got["rounds"] == 2
    assert all(v > 0 for v in got["decode_tokens_per_s"].values())  # shape only: no timing asserted
    assert set(got["prefill_tokens_per_s"]) == {"onnx", "pte"} and all(v > 0 for v in got["prefill_tokens_per_s"].values())
    assert len(got["load_average_1min"]) == 2


def test_emulating_a_non_arm_target_is_refused_before_the_export(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig

    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                    emulate=("x86-64",))
    with pytest.raises(TargetError, match="no ARM CPU model"):
        export_llm(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.emulator
@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_emulated_cortex_a76_decodes_like_the_host(tiny_lm_export: Any, emulator_env: Any, fmt: str,
                                                   tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """The shipped custom-SDPA .pte needs ExecuTorch's llama:: kernels, which the wheel's C++ runtime lacks: a
    typed error names them; the static-cache program of the same variant is what the emulated runner measures."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgeq.errors import EmulatorError
    from edgeq.llm.config import Variant
    from edgeq.llm.emulate import emulated_speed
    from edgeq.llm.metrics import greedy
    from edgeq.llm.pte_export import PteLowering, build_pte

    runner, path = _runner(tiny_lm_export, fmt)
    prompt = _ids(tiny_lm_export)[:12]
    if fmt == "pte":
        with pytest.raises(EmulatorError, match="llama::custom_sdpa"):
            emulated_speed(path, fmt, "raspberry-pi-5", prompt, tmp_path, decode_tokens=6)
        src = str(tiny_lm["model"])
        path = build_pte(AutoModelForCausalLM.from_pretrained(src).eval(), AutoTokenizer.from_pretrained(src),
                         tmp_path / "static.pte", Variant("pte", 8, 0, activations="dynamic-int8"), 64,
                         lowering=PteLowering(program="static-cache"))
        runner = PteLM(path)
    got = emulated_speed(path, fmt, "raspberry-pi-5", prompt, tmp_path, decode_tokens=6)
    assert got["emulated"] is True and got["cpu_model"] == "cortex-a76" and got["latency_kind"] == "emulated"
    assert got["metrics"]["decode_tokens_per_s"] > 0
    if fmt == "onnx":  # greedy continuation of the prompt, the same on aarch64 kernels as on the host
        assert got["metrics"]["generated"] == greedy(runner, prompt, 6).tolist()
    else:  # the prompt fed one token at a time through the program's KV cache on the emulated CPU
        host = np.concatenate([runner.forward(prompt[i:i + 1], i) for i in range(len(prompt))]).argmax(-1)
        assert np.mean(np.asarray(got["metrics"]["stepwise_argmax"]) == host) >= 0.9
    json.dumps(got)  # manifest-ready
