"""A .pte mixed variant: 4-bit grouped body, the output projection and the first and last decoder blocks at 8 bits
per channel (checked on the quantized tensors, no export)."""

from __future__ import annotations

import pytest


def test_ends_and_lm_head_stay_8_bit_per_channel() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchao")
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.llm.config import Variant
    from edgeq.llm.pte_export import quantize_linears
    from edgeq.llm.search import ladder

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg).eval()
    v = Variant("pte", 4, 32, activations="dynamic-int8", keep8=("lm_head", "ends"), algo="gptq")
    assert v.name == "pte-8da4g32-gptq-lm_head8-ends8-emb8"
    # the ladder's mixed rung measures which groups stay 8-bit instead (tests/llm/test_pte_sensitivity.py)
    assert not any("ends" in r.keep8 for r in ladder("pte")) and any(r.keep8_cap for r in ladder("pte"))
    quantize_linears(m, v)

    def scheme(lin: torch.nn.Linear) -> tuple[object, int]:
        w = lin.weight
        return w.target_dtype, int(w.block_size[-1])

    for i, layer in enumerate(m.model.layers):
        want = (torch.int8, 64) if i in (0, 3) else (torch.int4, 32)  # type: ignore[attr-defined]
        assert scheme(layer.self_attn.q_proj) == want, i
    assert scheme(m.lm_head) == (torch.int8, 64)


def test_weight_only_int8_pte_is_refused() -> None:
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeq.errors import UsageError
    from edgeq.llm.config import Variant
    from edgeq.llm.pte_export import quantize_linears

    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    with torch.no_grad(), pytest.raises(UsageError, match="dynamic-int8"):
        quantize_linears(LlamaForCausalLM(cfg).eval(), Variant("pte", 8, 0, activations="weight-only"))
