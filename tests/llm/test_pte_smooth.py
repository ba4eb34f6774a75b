"""SmoothQuant for decoder LMs (edgeq.llm.smooth): folded into the RMSNorm weights and the up-projections, exact in
float, and it is the .pte ladder's 8-bit rung. No lowering here (seconds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def outlier_llama() -> Any:
    """A tiny random Llama with the activation outliers real small LMs have: a few RMSNorm channels and a few
    up-projection rows (so SwiGLU-product channels feeding down_proj) 30x larger than the rest."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)  # peaked predictions, so quantization noise shows in the logits
        for layer in m.model.layers:
            layer.input_layernorm.weight[[3, 17]] = 30.0
            layer.post_attention_layernorm.weight[[5, 40]] = 30.0
            layer.mlp.up_proj.weight[[7, 99]] *= 30.0
    return m


def windows(n: int = 4, t: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 96, size=(n, t), dtype=np.int64)


def logits(m: Any, w: np.ndarray) -> Any:
    import torch

    with torch.no_grad():
        return m(torch.from_numpy(w)).logits.float()


def test_smoothing_is_exact_in_float_and_helps_8da8w() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchao")
    import copy

    from edgeq.llm.config import Variant
    from edgeq.llm.pte_export import quantize_linears
    from edgeq.llm.smooth import smooth_decoder

    m, w = outlier_llama(), windows()
    ref = logits(m, w)
    smoothed = copy.deepcopy(m)
    smoothed.lm_head.weight = torch.nn.Parameter(smoothed.lm_head.weight.detach().clone())
    log = smooth_decoder(smoothed, w)
    applied = {e["layers"][0].rsplit(".", 1)[-1] for e in log if e["alpha"] > 0}
    # the norm -> q/k/v, norm -> gate/up and up -> down folds all fire on these outliers
    assert {"q_proj", "gate_proj", "down_proj"} <= applied, log
    # exact in float: only the weights moved (the graph is unchanged)
    np.testing.assert_allclose(logits(smoothed, w).numpy(), ref.numpy(), rtol=0, atol=2e-4 * float(ref.abs().max()))
    assert torch.equal(smoothed.model.embed_tokens.weight, m.model.embed_tokens.weight)  # the head was untied first

    v = Variant("pte", 8, 0, activations="dynamic-int8")

    def q_error(model: Any) -> float:
        q = copy.deepcopy(model)
        quantize_linears(q, v)
        return float(((logits(q, w) - ref) ** 2).mean())

    plain = copy.deepcopy(m)
    plain.lm_head.weight = torch.nn.Parameter(plain.lm_head.weight.detach().clone())
    assert q_error(smoothed) < 0.5 * q_error(plain)


def test_smoothed_8da8w_is_the_pte_8_bit_rung_and_needs_calibration() -> None:
    pytest.importorskip("torch")
    from edgeq.errors import UsageError
    from edgeq.llm.pte_export import quantized_model
    from edgeq.llm.search import is_eight_bit, ladder

    rung = ladder("pte")[-1]
    assert rung.name == "pte-8da8pc-sq-emb8" and rung.smooth and is_eight_bit(rung)
    assert rung.to_dict()["smooth"] is True
    with pytest.raises(UsageError, match="calibration"):
        quantized_model(outlier_llama(), rung)
    q = quantized_model(outlier_llama(), rung, windows())
    assert type(q.model.layers[0].mlp.down_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"


def test_4_bit_strengths_balance_the_4_bit_grid() -> None:
    """For 4-bit weights (8da4w) the strength is chosen with the int4 group round trip in the simulated error: less
    range moves into the weights than for int8 ones (AWQ's balance). SmolLM2-135M, GPTQ measured rung: 1.084x eval
    perplexity with these strengths, 1.124x unsmoothed (docs/explanation/benchmarks/llm.md)."""
    torch = pytest.importorskip("torch")
    import copy

    from edgeq.llm.smooth import smooth_decoder

    m, w = outlier_llama(), windows()
    ref = logits(m, w)
    four, eight = copy.deepcopy(m), copy.deepcopy(m)
    for x in (four, eight):
        x.lm_head.weight = torch.nn.Parameter(x.lm_head.weight.detach().clone())
    log4 = smooth_decoder(four, w, weight_group=32)
    log8 = smooth_decoder(eight, w)
    a4, a8 = [e["alpha"] for e in log4], [e["alpha"] for e in log8]
    assert [e["layers"] for e in log4] == [e["layers"] for e in log8]
    assert sum(a4) < sum(a8) and any(a > 0 for a in a4), (a4, a8)
    assert all(e["error_after"] <= e["error_before"] for e in log4)
    np.testing.assert_allclose(logits(four, w).numpy(), ref.numpy(), rtol=0, atol=2e-4 * float(ref.abs().max()))
