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


def _stepwise_logits(runner: Any, prompt: np.ndarray) -> np.ndarray:
    """The prompt fed one token at a time through the program's KV cache: what the emulated C++ runner does."""
    return np.concatenate([runner.forward(prompt[i:i + 1], i) for i in range(len(prompt))])


@pytest.mark.emulator
@pytest.mark.parametrize("fmt", ["onnx", "pte", "pte-static-cache"])
def test_emulated_cortex_a76_decodes_like_the_host(tiny_lm_export: Any, emulator_env: Any, fmt: str,
                                                   tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """Both formats' shipped artifacts (the .pte is the custom-SDPA program: the emulated C++ runner compiles in
    ExecuTorch's llama:: kernels) and the static-cache .pte decode on an emulated Cortex-A76 as on the host."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgeq.llm.config import Variant
    from edgeq.llm.emulate import emulated_speed
    from edgeq.llm.metrics import greedy
    from edgeq.llm.pte_export import PteLowering, build_pte, custom_ops

    runner, path = _runner(tiny_lm_export, fmt.split("-")[0])
    prompt = _ids(tiny_lm_export)[:12]
    if fmt == "pte":
        assert custom_ops(path) == ["llama::custom_sdpa", "llama::update_cache"]
    if fmt == "pte-static-cache":
        src = str(tiny_lm["model"])
        path = build_pte(AutoModelForCausalLM.from_pretrained(src).eval(), AutoTokenizer.from_pretrained(src),
                         tmp_path / "static.pte", Variant("pte", 8, 0, activations="dynamic-int8"), 64,
                         lowering=PteLowering(program="static-cache"))
        runner = PteLM(path)
    got = emulated_speed(path, fmt.split("-")[0], "raspberry-pi-5", prompt, tmp_path, decode_tokens=6)
    assert got["emulated"] is True and got["cpu_model"] == "cortex-a76" and got["latency_kind"] == "emulated"
    assert got["metrics"]["decode_tokens_per_s"] > 0
    if fmt == "onnx":  # greedy continuation of the prompt, the same on aarch64 kernels as on the host
        assert got["metrics"]["generated"] == greedy(runner, prompt, 6).tolist()
    else:  # the prompt fed one token at a time through the program's KV cache on the emulated CPU
        host = _stepwise_logits(runner, prompt).argmax(-1)
        assert np.mean(np.asarray(got["metrics"]["stepwise_argmax"]) == host) >= 0.9
    json.dumps(got)  # manifest-ready


@pytest.mark.emulator
def test_emulated_custom_sdpa_pte_gives_the_hosts_logits(tiny_lm_export: Any, emulator_env: Any,
                                                        tmp_path: Path) -> None:
    """ExecuTorch's llama:: kernels compiled into the C++ runner: its logits, step by step through the KV cache,
    are the Python runtime's on the host (x86_64 build: same kernels, float-exact) and on an emulated Cortex-A76
    (aarch64 build: XNNPACK's ARM int8 kernels round the dynamic activations their own way)."""
    from edgeq.llm.emulate import unsupported_ops
    from edgeq.llm.pte_export import custom_ops
    from edgeq.targets import load_target
    from edgeq.validate.runners.emulator import EmulatorRunner
    from edgeq.validate.runners.host_cpp import HostCppRunner

    runner, path = _runner(tiny_lm_export, "pte")
    assert unsupported_ops(custom_ops(path)) == []  # every llama:: op it calls has a kernel in the runner
    prompt = _ids(tiny_lm_export)[:12]
    host = _stepwise_logits(runner, prompt)
    steps = tmp_path / "steps.npz"
    np.savez(steps, tokens=prompt.reshape(-1, 1), input_pos=np.arange(len(prompt), dtype=np.int64))
    for cpp, atol in ((HostCppRunner(), 1e-4), (EmulatorRunner(load_target("raspberry-pi-5")), 0.03)):
        work = tmp_path / type(cpp).__name__
        work.mkdir()
        logits = next(iter(cpp.run(path, "pte", steps, work).outputs.values())).reshape(host.shape)
        np.testing.assert_allclose(logits, host, atol=atol)


@pytest.mark.emulator
def test_export_records_emulated_decode_speed_of_the_custom_sdpa_pte(tiny_lm: dict[str, Path], emulator_env: Any,
                                                                      tmp_path: Path) -> None:
    """``--emulate raspberry-pi-5`` with the default (custom-SDPA) .pte: the manifest holds its decode tokens/s on
    the emulated Cortex-A76, next to the host's, and the emulated steps decode the host's tokens."""
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant

    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], formats=("pte",), seq_len=16, max_context=64, calib_windows=1,
                    eval_windows=1, greedy_prompts=1, greedy_tokens=4, emulate=("raspberry-pi-5",),
                    variants=(Variant("pte", 8, 0, activations="dynamic-int8"),), max_ppl_increase=1000.0)
    res = export_llm(cfg)
    (art,) = res.manifest["artifacts"]
    assert art["details"]["pte_program"] == "custom-sdpa"
    host, emu = art["validations"]
    assert host["emulated"] is False and host["metrics"]["decode_tokens_per_s"] > 0
    assert emu["emulated"] is True and emu["cpu_model"] == "cortex-a76" and emu["target"] == "raspberry-pi-5"
    assert emu["metrics"]["decode_tokens_per_s"] > 0 and "custom SDPA" in emu["metrics"]["decode_kind"]
    prompt = _ids(res)[:16]  # the run's prompt: the first evaluation window's start
    host_steps = _stepwise_logits(PteLM(res.output / art["details"]["folder"]), prompt).argmax(-1)
    assert np.mean(np.asarray(emu["metrics"]["stepwise_argmax"]) == host_steps) >= 0.9
