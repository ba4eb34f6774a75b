"""ExecuTorch's fast decode program (edgeq.llm.pte_sdpa): the KV cache and attention as ExecuTorch's custom ops,
checked against transformers' own forward pass: the whole window at once, one token at a time through the cache,
and a prefill of T > 1 continued from the middle (the LLM runner's prefill + decode on one program)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.errors import CaptureError
from edgeq.llm.config import Variant
from edgeq.llm.pte_export import build_pte, program_for
from edgeq.llm.pte_sdpa import wrapper
from edgeq.llm.runners import PteLM, TorchLM
from tests.llm.test_families import tiny_family

IDS = np.arange(2, 40, dtype=np.int64)  # 38 tokens: longer than the tiny Gemmas' window of 16


def _model(kind: str, tiny_lm: dict[str, Path], tmp: Path) -> Any:
    from transformers import AutoModelForCausalLM

    src = tiny_lm["model"] if kind == "llama" else tiny_family(kind, tiny_lm["model"], tmp / kind)
    return AutoModelForCausalLM.from_pretrained(str(src)).eval(), src


def _three_ways(forward: Any, ids: np.ndarray) -> list[np.ndarray]:
    """The whole window; one token per call; a 20-token prefill and then the rest as a second chunk."""
    steps = np.concatenate([forward(ids[i:i + 1], i) for i in range(len(ids))])
    split = np.concatenate([forward(ids[:20], 0), forward(ids[20:], 20)])
    return [forward(ids, 0), steps, split]


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_custom_sdpa_wrapper_matches_transformers_in_torch(kind: str, tiny_lm: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """Eager, before any lowering: the custom ops' torch kernels give transformers' logits (Gemma 3's local
    layer through the explicit sliding mask, since its window of 16 is shorter than the 64-slot cache)."""
    import torch

    model, _ = _model(kind, tiny_lm, tmp_path)
    ref = TorchLM(model, 64).forward(IDS, 0)
    w = wrapper(copy.deepcopy(model), 64)

    def forward(ids: np.ndarray, start: int) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(w(torch.from_numpy(ids)[None], torch.tensor([start]))[0].numpy())

    for got in _three_ways(forward, IDS):
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_soft_capped_attention_falls_back_to_the_static_cache_program(tiny_lm: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    model, _ = _model("gemma2", tiny_lm, tmp_path)  # Gemma 2 soft-caps its attention logits
    assert program_for(model) == "static-cache"
    with pytest.raises(CaptureError, match="soft-capping"):
        wrapper(model, 64)
    llama, _ = _model("llama", tiny_lm, tmp_path)
    assert program_for(llama) == "custom-sdpa"


def _operators(pte: Path) -> list[str]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    prog = deserialize_pte_binary(pte.read_bytes())
    prog = getattr(prog, "program", prog)
    forward = next(p for p in prog.execution_plan if p.name == "forward")
    return [o.name for o in forward.operators]


@pytest.mark.slow
@pytest.mark.parametrize("kind,variant", [("llama", Variant("pte", 8, 0, activations="dynamic-int8")),
                                          ("gemma3", Variant("pte", 32, embedding_bits=0))])
def test_custom_sdpa_pte_matches_transformers(kind: str, variant: Variant, tiny_lm: dict[str, Path],
                                              tmp_path: Path) -> None:
    """The lowered program: the custom ops in the operator list (no index_put on a cache), XNNPACK delegates,
    and the logits of transformers (float) or of the torch-quantized model (8da8w) in all three feeding orders."""
    from transformers import AutoTokenizer

    from edgeq.llm.pte_export import quantized_model

    model, src = _model(kind, tiny_lm, tmp_path)
    pte = build_pte(model, AutoTokenizer.from_pretrained(str(src)), tmp_path / f"{kind}.pte", variant, 64)
    ops = _operators(pte)
    assert {"llama::custom_sdpa", "llama::update_cache"} <= set(ops) and "aten::index_put" not in ops
    ref = TorchLM(quantized_model(model, variant) if variant.bits != 32 else model, 64).forward(IDS, 0)
    r = PteLM(pte)
    assert r.meta["use_kv_cache"] and r.meta["get_max_context_len"] == 64
    tol = 1e-4 if variant.bits == 32 else 0.05 * float(np.abs(ref).max())  # XNNPACK's int8 kernels vs torchao's
    for got in _three_ways(r.forward, IDS):
        np.testing.assert_allclose(got, ref, atol=tol)
        assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_emulating_either_pte_program_is_accepted_before_the_export(tiny_lm: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """The emulated C++ runner has ExecuTorch's llama:: kernels, so --emulate takes the custom-SDPA program too; an
    unknown program is still refused up front, not after minutes of lowering."""
    from edgeq.errors import UsageError
    from edgeq.llm.api import check_config
    from edgeq.llm.config import LlmConfig

    def cfg(**kw: Any) -> LlmConfig:
        return LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "o", calib_text=tiny_lm["calib"],
                         formats=("pte",), **kw)

    with pytest.raises(UsageError, match="unknown .pte program"):
        check_config(cfg(pte_program="fast"))
    for program in ("auto", "custom-sdpa", "static-cache"):
        check_config(cfg(emulate=("raspberry-pi-5",), pte_program=program))  # no error
    assert not (tmp_path / "o").exists()
