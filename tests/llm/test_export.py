"""End to end on a tiny random Llama: export both formats -> conventions -> KV cache == full pass -> generate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.llm.config import Variant
from edgeq.llm.pte_export import program_ops
from edgeq.llm.runners import OnnxLM, PteLM, TorchLM
from edgeq.recipe import Recipe


def _art(res: Any, name: str) -> dict[str, Any]:
    return next(a for a in res.manifest["artifacts"] if a["name"] == name)


def test_manifest_records_trials_pick_and_metrics(tiny_lm_export: Any) -> None:
    m = json.loads((tiny_lm_export.output / "edgeq.json").read_text())
    assert m["llm"]["formats"]["onnx"]["pick"] == "onnx-w4g32-emb4"
    assert [t["name"] for t in m["llm"]["formats"]["onnx"]["trials"]] == ["onnx-w4g32-emb4", "onnx-w8g32-embf"]
    assert m["llm"]["formats"]["pte"]["pick"] == "pte-8da8pc-emb8"
    sel = m["llm"]["formats"]["onnx"]["selection"]  # the one selection loop's record, in its one wording
    assert sel["met"] and sel["shipped"] == "onnx-w4g32-emb4" and sel["trials"] == 2
    assert sel["summary"].startswith("search (llm-onnx): shipped onnx-w4g32-emb4, which meets the budget")
    for fmt, f in m["llm"]["formats"].items():  # each trial records the recipe it is built from, which is its variant
        for t in f["trials"]:
            back = Variant.from_recipe(fmt, None if t["recipe"] is None else Recipe.from_dict(t["recipe"]))
            assert back.to_dict() == t["variant"] and back.name == t["name"]
    for t in m["llm"]["formats"]["onnx"]["trials"]:  # a rung is accepted on its 95 % upper bound, not the estimate
        assert t["calib"]["ppl_ratio_upper"] >= t["calib"]["ppl_ratio"]
        assert t["passed"] is (t["calib"]["ppl_ratio_upper"] <= 1 + 1000 / 100)
    for a in m["artifacts"]:
        v = a["validations"][0]
        assert (tiny_lm_export.output / a["path"]).is_file()
        assert {"ppl", "ppl_ratio", "top1_agreement", "greedy_agreement", "decode_tokens_per_s",
                "prefill_tokens_per_s", "size_ratio"} <= set(v["metrics"])
        assert v["budget_check"]["passed"] is (v["metrics"]["ppl_ratio"] <= 1 + 1000 / 100)
    four, eight = _art(tiny_lm_export, "onnx-w4g32-emb4"), _art(tiny_lm_export, "onnx-w8g32-embf")
    assert four["bytes"] < eight["bytes"]
    assert not list(tiny_lm_export.output.parent.glob(".out.*")), "the temporary folder must be renamed away"


def test_onnx_follows_the_genai_convention(tiny_lm_export: Any) -> None:
    folder = tiny_lm_export.output / "onnx" / "onnx-w4g32-emb4"
    cfg = json.loads((folder / "genai_config.json").read_text())
    assert cfg["model"]["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert (folder / "tokenizer.json").is_file()
    r = OnnxLM(folder)
    names = {i.name for i in r.sess.get_inputs()}
    assert {"input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.1.value"} <= names
    assert {"logits", "present.0.key"} <= {o.name for o in r.sess.get_outputs()}


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_token_by_token_decoding_matches_the_full_pass(tiny_lm_export: Any, fmt: str) -> None:
    art = next(a for a in tiny_lm_export.manifest["artifacts"] if a["format"] == fmt)
    path = tiny_lm_export.output / art["details"]["folder"]
    runner = OnnxLM(path) if fmt == "onnx" else PteLM(path)
    ids = np.load(tiny_lm_export.output / "validation" / "inputs.npz")["eval_windows"][0][:20]
    runner.reset()
    full = runner.forward(ids, 0)  # an empty past is the prefill
    runner.reset()
    steps = np.concatenate([runner.forward(ids[i:i + 1], i) for i in range(len(ids))])
    np.testing.assert_allclose(steps, full, atol=1e-3, rtol=1e-3)
    assert art["validations"][0]["metrics"]["stepwise_vs_full_ppl_rel_diff"] < 1e-3


def test_pte_has_the_executorch_llm_metadata(tiny_lm_export: Any, tiny_lm: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    art = next(a for a in tiny_lm_export.manifest["artifacts"] if a["format"] == "pte")
    r = PteLM(tiny_lm_export.output / art["path"])
    assert r.meta["get_max_context_len"] == 64 and r.meta["get_max_seq_len"] == 64
    assert r.meta["get_vocab_size"] == 320 and r.meta["use_kv_cache"] is True
    assert r.meta["get_bos_id"] == 0 and r.meta["get_eos_ids"] == 1
    # ExecuTorch's fast decode program (edgeq.llm.pte_sdpa), and the manifest says what a runtime must link
    assert art["details"]["pte_program"] == "custom-sdpa"
    assert art["details"]["custom_ops"] == ["llama::custom_sdpa", "llama::update_cache"]
    # --pte-delegation auto: the custom-SDPA program delegates every op XNNPACK takes, so RMSNorm's power and
    # scale, SiLU and the residual adds do not run on ExecuTorch's portable kernels (they do with `linears`)
    assert art["details"]["pte_delegation"] == "all"
    outside = set(program_ops(tiny_lm_export.output / art["path"]))
    assert not outside & {"aten::sigmoid.out", "aten::mul.out", "aten::pow.Tensor_Scalar_out"}, outside
    # 8-bit weights on a 64-wide model stay close to float: the program computes the same function
    ids = np.arange(2, 30, dtype=np.int64)
    ref = TorchLM(AutoModelForCausalLM.from_pretrained(str(tiny_lm["model"])).eval(), 64).forward(ids, 0)
    got = r.forward(ids, 0)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.8
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_generate_streams_from_both_formats(tiny_lm_export: Any, fmt: str) -> None:
    from edgeq.llm.generate import generate

    pieces = list(generate(tiny_lm_export.output, "The for statement", fmt, max_new_tokens=6))
    assert 1 <= len(pieces) <= 6 and all(isinstance(p, str) for p in pieces)
    again = list(generate(tiny_lm_export.output, "The for statement", fmt, max_new_tokens=6))
    assert pieces == again  # greedy is deterministic
    sampled = list(generate(tiny_lm_export.output, "The", fmt, max_new_tokens=6, temperature=1.0, top_p=0.9, seed=1))
    assert len(sampled) >= 1
