"""LLM fixtures: a tiny randomly initialised Llama saved as a HF folder (byte-level BPE trained on Python's own
docs), English text files from ``pydoc_data.topics``, and one export of both formats shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def english_text(chars: int, offset: int = 0) -> str:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text[offset:offset + chars]


def tiny_llama_folder(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([english_text(20000)], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tk.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).eval().save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny_lm")
    (d / "calib.txt").write_text(english_text(20000, 0))
    (d / "eval.txt").write_text(english_text(20000, 40000))
    return {"model": tiny_llama_folder(d / "model"), "calib": d / "calib.txt", "eval": d / "eval.txt", "dir": d}


@pytest.fixture(scope="session")
def tiny_lm_export(tiny_lm: dict[str, Path]) -> Any:
    """Both formats, one 4-bit and one 8-bit rung each, short windows: the shared artifact of the tests."""
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant

    cfg = LlmConfig(model=str(tiny_lm["model"]), output=tiny_lm["dir"] / "out", calib_text=tiny_lm["calib"],
                    eval_text=tiny_lm["eval"], seq_len=32, max_context=64, calib_windows=2, eval_windows=2,
                    greedy_prompts=1, greedy_tokens=8,
                    variants=(Variant("onnx", 4, 32, embedding_bits=4), Variant("onnx", 8, 32, embedding_bits=0),
                              Variant("pte", 8, 0, activations="dynamic-int8")),
                    max_ppl_increase=1000.0)  # random weights: the budget is not what these tests check
    return export_llm(cfg)


@pytest.fixture(scope="session")
def peaked(tiny_lm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Llama with its matrices x4, so its predictions are peaked enough for 4-bit weights to cost
    perplexity (measured: x1.007 on the eval windows; the random model's near-uniform outputs give x0.998), and
    an ONNX-only 4-bit export of it (seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig, Variant

    d = tmp_path_factory.mktemp("peaked")
    m = AutoModelForCausalLM.from_pretrained(str(tiny_lm["model"]))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    m.save_pretrained(str(d / "model"))
    AutoTokenizer.from_pretrained(str(tiny_lm["model"])).save_pretrained(str(d / "model"))
    cfg = LlmConfig(model=str(d / "model"), output=d / "out", calib_text=tiny_lm["calib"], eval_text=tiny_lm["eval"],
                    seq_len=32, max_context=64, calib_windows=2, eval_windows=2, greedy_prompts=1, greedy_tokens=4,
                    formats=("onnx",), variants=(Variant("onnx", 4, 32, embedding_bits=4),), max_ppl_increase=50.0)
    export_llm(cfg)
    return {"model": d / "model", "out": d / "out"}
