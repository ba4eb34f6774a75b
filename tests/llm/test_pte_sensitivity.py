"""The measured .pte rung: which groups stay 8-bit is chosen by measured sensitivity on calibration windows under a
size cap (edgeq.llm.sensitivity), recorded as block<i> groups in the recipe, built as chosen, and the trial's
manifest row says what was measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

OUTLIER_BLOCK = 2


@pytest.fixture(scope="module")
def outlier_llama() -> Any:
    """A tiny 4-block Llama with peaked predictions (matrices x4) whose blocks other than block 2 already lie on the
    4-bit grid (rounding them again costs nothing), while block 2 has an outlier (3x the matrix's largest weight)
    in every group of 32 inputs of every row: the only block whose 4-bit rounding costs anything, and a lot."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.llm.sensitivity import fake_4bit

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
        for i, layer in enumerate(m.model.layers):
            for lin in layer.modules():
                if isinstance(lin, torch.nn.Linear):
                    if i == OUTLIER_BLOCK:
                        lin.weight[:, ::32] = 3 * lin.weight.abs().max()
                    else:
                        lin.weight.copy_(fake_4bit(lin.weight, 32))
    return m


def _calib(windows: int = 4, seq: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 96, size=(windows, seq))


def test_the_outlier_block_ranks_most_sensitive_and_is_kept_within_the_cap(outlier_llama: Any) -> None:
    from edgeq.llm.config import Variant
    from edgeq.llm.sensitivity import measure_groups, predicted_bytes, resolve
    from edgeq.llm.source import float_bytes

    costs = {c.group: c for c in measure_groups(outlier_llama, _calib(), 32)}
    assert set(costs) == {"lm_head", "block0", "block1", "block2", "block3"}
    blocks = sorted((c for c in costs.values() if c.group != "lm_head"), key=lambda c: c.kl, reverse=True)
    assert blocks[0].group == f"block{OUTLIER_BLOCK}" and blocks[0].kl > 10 * blocks[1].kl, blocks
    rung = Variant("pte", 4, 32, activations="dynamic-int8", embedding_bits=4)
    base = predicted_bytes(outlier_llama, rung)
    fb = float_bytes(outlier_llama)
    # room for the output projection and one block, never two blocks (each block adds more than the head)
    room = costs["lm_head"].extra_bytes + blocks[0].extra_bytes
    assert costs["lm_head"].extra_bytes < min(c.extra_bytes for c in blocks)
    cap = (base + room + 1) / fb
    got, record = resolve(outlier_llama, _calib(), Variant("pte", 4, 32, activations="dynamic-int8",
                                                           embedding_bits=4, keep8_cap=cap), fb)
    kept_blocks = [g for g in got.keep8 if g.startswith("block")]
    assert kept_blocks == [f"block{OUTLIER_BLOCK}"] and got.keep8_cap == 0
    assert record["predicted_bytes"] == predicted_bytes(outlier_llama, got) <= cap * fb
    assert [g["group"] for g in record["groups"] if g["kept"]] == list(got.keep8)
    # no room at all: nothing is kept
    none, _ = resolve(outlier_llama, _calib(), Variant("pte", 4, 32, activations="dynamic-int8", embedding_bits=4,
                                                       keep8_cap=base / fb), fb)
    assert none.keep8 == ()


def test_chosen_blocks_are_built_8_bit_and_skipped_by_gptq(outlier_llama: Any) -> None:
    torch = pytest.importorskip("torch")
    from edgeq.llm.config import Variant
    from edgeq.llm.pte_export import quantized_model

    v = Variant("pte", 4, 32, activations="dynamic-int8", keep8=("block1", "block2"), algo="gptq", embedding_bits=4)
    assert v.name == "pte-8da4g32-gptq-b1.2_8-emb4"
    qm = quantized_model(outlier_llama, v, _calib())
    for i, layer in enumerate(qm.model.layers):
        w = layer.mlp.down_proj.weight
        assert (w.target_dtype, int(w.block_size[-1])) == ((torch.int8, 128) if i in (1, 2) else (torch.int4, 32)), i
    assert qm.lm_head.weight.target_dtype == torch.int4  # type: ignore[attr-defined]


def test_block_groups_round_trip_through_the_recipe_and_onnx_refuses_them() -> None:
    from edgeq.errors import UsageError
    from edgeq.llm.config import Variant
    from edgeq.recipe import GroupOverride, Recipe

    v = Variant("pte", 4, 32, activations="dynamic-int8", keep8=("lm_head", "block0", "block17"), algo="gptq",
                embedding_bits=4)
    recipe = v.to_recipe()
    assert recipe is not None and [g.group for g in recipe.groups] == ["lm_head", "block0", "block17"]
    assert Variant.from_recipe("pte", Recipe.from_dict(recipe.to_dict())) == v
    with pytest.raises(UsageError, match="block"):
        GroupOverride("block01", "int8")
    with pytest.raises(UsageError, match="numbered decoder block"):
        Variant("onnx", 4, 32, keep8=("block3",), embedding_bits=4).check()
    with pytest.raises(UsageError, match="measured at search time"):
        Variant("pte", 4, 32, activations="dynamic-int8", keep8_cap=0.22).to_recipe()


def test_the_measured_rung_records_its_measurement_in_the_manifest(tiny_lm: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """Through the export: the rung is measured, judged, lowered (its 4-bit embedding table runs in ExecuTorch's
    runtime), and its trial records the sensitivity table and the recipe with the kept block groups."""
    pytest.importorskip("executorch")
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant

    rung = Variant("pte", 4, 32, activations="dynamic-int8", algo="gptq", embedding_bits=4, keep8_cap=0.22)
    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], formats=("pte",), seq_len=32, max_context=64, calib_windows=2,
                    eval_windows=2, greedy_prompts=1, greedy_tokens=8, max_ppl_increase=1000.0,
                    variants=(rung, Variant("pte", 8, 0, activations="dynamic-int8")))
    res = export_llm(cfg)
    trial = res.manifest["llm"]["formats"]["pte"]["trials"][0]
    sens = trial["sensitivity"]
    kept = [g["group"] for g in sens["groups"] if g["kept"]]
    assert {g["group"] for g in sens["groups"]} == {"lm_head", "block0", "block1"} and 0 < len(kept) < 3
    # the 4-bit table follows the 4-bit body: no embedding row
    assert [g["group"] for g in trial["recipe"]["groups"]] == kept and trial["variant"]["embedding_bits"] == 4
    assert trial["judged_on"] == "artifact" and trial["variant"]["keep8_cap"] == 0
    fb = trial["bytes"] / trial["size_ratio"]
    assert sens["predicted_bytes"] <= 0.22 * fb
    # the prediction is the artifact's weights; the program adds a few tens of KB beside them (44 KB here, ~0.6 MB
    # on SmolLM2-135M's 120 MB)
    assert 0 <= trial["bytes"] - sens["predicted_bytes"] < 64_000, (trial["bytes"], sens["predicted_bytes"])
