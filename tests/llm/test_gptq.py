"""GPTQ (edgeq.llm.gptq): the rounding lands on the grid the format's RTN stores, loses less than RTN on the
calibration inputs, and a GPTQ ONNX variant builds, records its name and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.llm.config import Variant


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_rounds_onto_the_rtn_grid_with_less_output_error(symmetric: bool) -> None:
    import torch

    from edgeq.llm.gptq import gptq_weight, group_grid

    torch.manual_seed(0)
    w = torch.randn(16, 128)
    x = torch.randn(512, 128) @ torch.randn(128, 128) * 0.3 + 2 * torch.randn(128)  # correlated, offset inputs
    h = 2 * x.T @ x / x.shape[0]
    scale, zero = group_grid(w, 32, symmetric)
    s, z = scale[..., None], zero[..., None]
    rtn = ((torch.clamp(torch.round(w.reshape(16, 4, 32) / s) + z, 0, 15) - z) * s).reshape(16, 128)
    q = gptq_weight(w, h, 32, symmetric, act_order=True)
    codes = q.reshape(16, 4, 32) / s + z
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.min() >= -1e-3 and codes.max() <= 15 + 1e-3
    out_err = lambda a: float(((x @ (a - w).T) ** 2).mean())  # noqa: E731
    assert out_err(q) < 0.7 * out_err(rtn)


def test_gptq_onnx_variant_builds_and_runs(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    from edgeq.errors import UsageError
    from edgeq.llm.build import onnx_source
    from edgeq.llm.onnx_export import build_onnx, builder_options
    from edgeq.llm.runners import OnnxLM, TorchLM
    from edgeq.llm.source import load_lm

    v = Variant("onnx", 4, 32, symmetric=False, embedding_bits=4, algo="gptq")
    assert v.name == "onnx-w4g32-asym-gptq-emb4" and builder_options(v)[1]["algo_config"] == "rtn"
    lm = load_lm(str(tiny_lm["model"]))
    calib = np.arange(3, 3 + 2 * 32, dtype=np.int64).reshape(2, 32) % int(lm.model.config.vocab_size)
    src = onnx_source(lm, tiny_lm["model"], calib, v, tmp_path / "cache")
    assert src != tiny_lm["model"] and (src / "config.json").is_file()
    assert onnx_source(lm, tiny_lm["model"], calib, Variant("onnx", 4, 32), tmp_path / "c") == tiny_lm["model"]
    with pytest.raises(UsageError):  # onnxruntime's symmetric RTN cannot re-pick a GPTQ grid
        builder_options(Variant("onnx", 4, 32, embedding_bits=4, algo="gptq"))
    out = build_onnx(src, tmp_path / v.name, v, tmp_path / "cache")
    ids = np.arange(3, 19, dtype=np.int64)
    logits = OnnxLM(out).forward(ids, 0)
    ref = TorchLM(lm.model, 64).forward(ids, 0)
    assert np.isfinite(logits).all() and (logits.argmax(-1) == ref.argmax(-1)).mean() > 0.5


def test_gptq_pte_variant_rounds_before_torchao_and_needs_calibration() -> None:
    """The .pte GPTQ rung: the eager torchao model (what the search judges) runs and follows the float model;
    without calibration windows, or asymmetric (XNNPACK's blockwise int4 is symmetric), it is refused."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.errors import UsageError
    from edgeq.llm.pte_export import quantized_model

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg).eval()
    v = Variant("pte", 4, 32, activations="dynamic-int8", algo="gptq")
    assert v.name == "pte-8da4g32-gptq-emb8"
    calib = np.arange(4 * 32, dtype=np.int64).reshape(4, 32) % 64
    q = quantized_model(m, v, calib)
    ids = torch.arange(1, 17)[None]
    with torch.no_grad():
        a, b = m(input_ids=ids).logits, q(input_ids=ids).logits
    assert torch.isfinite(b).all() and (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.5
    for bad, c in ((v, None), (Variant("pte", 4, 32, symmetric=False, activations="dynamic-int8", algo="gptq"), calib)):
        with pytest.raises(UsageError):
            quantized_model(m, bad, c)


def test_gptq_rung_through_the_export(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """The ONNX ladder's 4-bit rungs are GPTQ: an export with them records the GPTQ variant as its pick and ships
    a runnable artifact, which its recorded recipe rebuilds byte for byte."""
    from edgeq.hashing import sha256_file
    from edgeq.llm.api import export_llm
    from edgeq.llm.build import LlmBuildInputs, get_llm_builder
    from edgeq.llm.config import LlmConfig
    from edgeq.llm.runners import OnnxLM
    from edgeq.llm.search import ladder
    from edgeq.llm.source import load_lm, save_hf_folder
    from edgeq.llm.text import calib_eval_windows
    from edgeq.recipe import Recipe

    four = tuple(v for v in ladder("onnx") if v.bits == 4)
    assert [v.name for v in four] == ["onnx-w4g32-asym-gptq-emb4", "onnx-w4g32-asym-gptq-lm_head8-emb4"]
    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tiny_lm["dir"] / "gptq-out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], formats=("onnx",), seq_len=32, max_context=64, calib_windows=2,
                    eval_windows=2, greedy_prompts=1, greedy_tokens=4, variants=(*four, ladder("onnx")[-1]),
                    max_ppl_increase=1000.0, force=True)  # random weights: the budget is not what this checks
    manifest = export_llm(cfg).manifest
    m = manifest["llm"]["formats"]["onnx"]
    assert m["pick"] == four[0].name and m["trials"][0]["name"] == four[0].name
    art = cfg.output / "onnx" / four[0].name
    assert np.isfinite(OnnxLM(art).forward(np.arange(3, 11, dtype=np.int64), 0)).all()
    # the recorded recipe (a gptq step) and the recorded run rebuild the same bytes: the same calibration windows,
    # the same GPTQ rounding, the same builder
    rec = next(a for a in manifest["artifacts"] if a["name"] == four[0].name)
    recipe = Recipe.from_dict(rec["quantization"]["recipe"])
    assert Variant.from_recipe("onnx", recipe) == four[0] and rec["quantization"]["recipe"]["steps"] == [{"name": "gptq"}]
    assert m["trials"][0]["recipe"] == rec["quantization"]["recipe"]  # the ladder's trial records the same recipe
    c = manifest["config"]
    lm = load_lm(c["model"])
    calib, _ = calib_eval_windows(lm.tokenizer, Path(c["calib_text"]), Path(c["eval_text"]), c["seq_len"],
                                  c["calib_windows"], c["eval_windows"])
    hf = save_hf_folder(lm, tmp_path / "hf")
    inputs = LlmBuildInputs(lm, hf, calib, tmp_path / "cache", c["max_context"])
    again = get_llm_builder("onnx").build(inputs, recipe, tmp_path / "again")  # the GPTQ pass, then the builder
    assert again.record == rec["quantization"] and again.bytes == rec["bytes"]
    for f in ("model.onnx", "model.onnx.data"):
        assert sha256_file(again.path.parent / f) == sha256_file(art / f), f


@pytest.mark.slow
def test_gptq_pte_lowers_to_xnnpack_and_runs(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """The GPTQ grid (torchao's SYMMETRIC_NO_CLIPPING_ERR) lowers to XNNPACK's blockwise int4 like the default
    one: the .pte runs and its logits follow the eager quantized model's."""
    from edgeq.llm.pte_export import build_pte, quantized_model
    from edgeq.llm.runners import PteLM, TorchLM
    from edgeq.llm.source import load_lm

    lm = load_lm(str(tiny_lm["model"]))
    calib = np.arange(3, 3 + 2 * 32, dtype=np.int64).reshape(2, 32) % int(lm.model.config.vocab_size)
    v = Variant("pte", 4, 32, activations="dynamic-int8", keep8=("lm_head",), algo="gptq")
    ids = np.arange(3, 19, dtype=np.int64)
    eager = TorchLM(quantized_model(lm.model, v, calib), 64).forward(ids, 0)
    got = PteLM(build_pte(lm.model, lm.tokenizer, tmp_path / f"{v.name}.pte", v, 64, calib)).forward(ids, 0)
    assert np.isfinite(got).all() and (got.argmax(-1) == eager.argmax(-1)).mean() > 0.8
    assert np.abs(got - eager).max() < 0.1 * np.abs(eager).max()


def test_gptq_leaves_the_blocks_a_variant_keeps_8_bit() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.llm.gptq import gptq_model

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    m = LlamaForCausalLM(cfg).eval()
    first = m.model.layers[0].mlp.down_proj.weight.detach().clone()
    done = gptq_model(m, np.arange(64, dtype=np.int64).reshape(2, 32), 32, symmetric=True, skip=frozenset({0, 2}))
    assert done and {d.split(".")[0] for d in done} == {"1"} and len(done) == 7  # q k v o gate up down
    assert torch.equal(m.model.layers[0].mlp.down_proj.weight, first)


def test_gptq_rounds_the_untied_output_projection_only_when_asked() -> None:
    """HEAD: the output projection lands on its 4-bit grid too (the .pte rungs that keep it 4-bit); a head that
    shares the embedding table's weight is refused rather than rounding the table with it."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.errors import UsageError
    from edgeq.llm.gptq import gptq_model, group_grid

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    tied = LlamaForCausalLM(cfg).eval()
    calib = np.random.default_rng(0).integers(0, 96, size=(2, 16))
    with pytest.raises(UsageError, match="untied"):
        gptq_model(copy.deepcopy(tied), calib, 32, symmetric=True, head=True)
    m = copy.deepcopy(tied)
    m.lm_head.weight = torch.nn.Parameter(m.lm_head.weight.detach().clone())
    before = m.lm_head.weight.detach().clone()
    assert "lm_head" in gptq_model(m, calib, 32, symmetric=True, head=True)
    scale, zero = group_grid(before, 32, symmetric=True)
    codes = m.lm_head.weight.detach().reshape(96, 2, 32) / scale[..., None] + zero[..., None]
    assert torch.allclose(codes, codes.round(), atol=1e-3) and not torch.equal(m.lm_head.weight, before)
    assert torch.equal(m.model.embed_tokens.weight, tied.model.embed_tokens.weight)
