"""The ONNX KV-cache I/O convention (position_ids included) and the non-Llama families: Qwen2, Phi-3, Gemma 2,
Gemma 3 and GPT-2 as tiny random models, in each format the tools support; the architectures the ONNX builder
writes are read from its dispatch code, and the unsupported pair (GPT-2 -> ONNX) is a typed error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import ModelSourceError
from edgeq.llm.config import Variant
from edgeq.llm.onnx_export import build_onnx, builder_writers, check_architecture, supported_architectures
from edgeq.llm.runners import OnnxLM, TorchLM

IDS = np.arange(2, 30, dtype=np.int64)


def tiny_family(kind: str, tokenizer_from: Path, folder: Path) -> Path:
    """A 2-layer, 64-wide random model of family KIND with the tiny Llama's tokenizer (vocabulary 320)."""
    import torch
    from transformers import (
        AutoTokenizer,
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        Phi3Config,
        Phi3ForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    common = {"vocab_size": 320, "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": True}
    attn = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 256}
    torch.manual_seed(0)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**attn, **common))
    elif kind == "phi3":  # the builder's short-RoPE Phi-3 writer: original == max position embeddings
        model = Phi3ForCausalLM(Phi3Config(**attn, original_max_position_embeddings=256, pad_token_id=1, **common))
    elif kind == "gemma2":  # a sliding window (16) shorter than the test's 28 tokens, so windowing is exercised
        model = Gemma2ForCausalLM(Gemma2Config(**attn, head_dim=16, sliding_window=16, pad_token_id=1, **common))
    elif kind == "gemma3":  # one local (window 16, RoPE base 1e4) and one global (RoPE base 1e6) layer, QK-norm
        model = Gemma3ForCausalLM(Gemma3TextConfig(**attn, head_dim=16, sliding_window=16, pad_token_id=1,
                                                   layer_types=["sliding_attention", "full_attention"], **common))
    else:
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=256, **common))
    model.eval().save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def llama_fp32(tiny_lm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("onnx_io")
    return build_onnx(tiny_lm["model"], d / "fp32", Variant("onnx", 32), d / "cache")


def test_onnx_io_names_and_dynamic_axes(llama_fp32: Path) -> None:
    import onnx

    g = onnx.load(str(llama_fp32 / "model.onnx"), load_external_data=False).graph

    def dims(v: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    ins, outs = {i.name: dims(i) for i in g.input}, {o.name: dims(o) for o in g.output}
    assert list(ins)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert ins["input_ids"] == ins["position_ids"] == ["batch_size", "sequence_length"]
    assert ins["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert ins["past_key_values.1.value"] == ["batch_size", 2, "past_sequence_length", "kv_cache_dim"]
    assert outs["logits"] == ["batch_size", "sequence_length", 320]
    assert {"present.0.key", "present.1.value"} <= set(outs)
    genai = json.loads((llama_fp32 / "genai_config.json").read_text())["model"]["decoder"]["inputs"]
    assert genai["position_ids"] == "position_ids"


def test_empty_past_prefill_and_position_ids_are_honoured(llama_fp32: Path, tiny_lm: dict[str, Path]) -> None:
    import onnxruntime as ort
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm["model"])).eval()
    ref = TorchLM(model, 64).forward(IDS, 0)
    r = OnnxLM(llama_fp32)
    np.testing.assert_allclose(r.forward(IDS, 0), ref, atol=1e-4)  # past of length 0 = the prefill
    sess = ort.InferenceSession(str(llama_fp32 / "model.onnx"), providers=["CPUExecutionProvider"])
    empty = np.zeros((1, 2, 0, 16), dtype=np.float32)
    feeds = {"input_ids": IDS[None], "attention_mask": np.ones((1, len(IDS)), dtype=np.int64),
             **{n: empty for n in r.past_names}}
    # RoPE sees only relative positions, so a uniform shift changes nothing: open a gap in the middle instead
    pos = np.arange(len(IDS), dtype=np.int64)
    pos[len(IDS) // 2:] += 7
    shifted = sess.run(["logits"], {**feeds, "position_ids": pos[None]})[0][0]
    import torch

    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(IDS)[None], position_ids=torch.from_numpy(pos)[None]).logits
    np.testing.assert_allclose(shifted, want[0].numpy(), atol=1e-4)  # the positions fed are the positions used
    assert np.abs(shifted - ref).max() > 1e-3


def test_onnxruntime_genai_opens_the_folder_and_decodes_like_the_host(llama_fp32: Path) -> None:
    import onnxruntime_genai as og

    from edgeq.llm.metrics import greedy

    m = og.Model(str(llama_fp32))
    p = og.GeneratorParams(m)
    p.set_search_options(max_length=len(IDS[:8]) + 10, do_sample=False)
    gen = og.Generator(m, p)
    gen.append_tokens(IDS[:8].tolist())
    while not gen.is_done():
        gen.generate_next_token()
    assert list(gen.get_sequence(0))[8:] == greedy(OnnxLM(llama_fp32), IDS[:8], 10).tolist()


def test_onnx_architectures_come_from_the_builders_dispatch() -> None:
    """Read from onnxruntime_genai/models/builder.py (create_model's if/elif chain), not an edgeq list."""
    import onnxruntime_genai.models.builder as builder

    writers = builder_writers()
    assert writers["Gemma3ForCausalLM"] == "Gemma3Model" and writers["LlamaForCausalLM"] == "LlamaModel"
    assert all(hasattr(builder, w) for w in writers.values())  # each names a writer class the builder imports
    assert "Gemma3ForCausalLM" in supported_architectures() and "GPT2LMHeadModel" not in writers
    assert check_architecture("Gemma3ForCausalLM") == "Gemma3ForCausalLM"


@pytest.mark.parametrize("kind", ["qwen2", "phi3", "gemma2", "gemma3"])
def test_onnx_families_match_transformers(kind: str, tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    src = tiny_family(kind, tiny_lm["model"], tmp_path / kind)
    ref = TorchLM(AutoModelForCausalLM.from_pretrained(str(src)).eval(), 64).forward(IDS, 0)
    r = OnnxLM(build_onnx(src, tmp_path / "onnx", Variant("onnx", 32), tmp_path / "cache"))
    np.testing.assert_allclose(r.forward(IDS, 0), ref, atol=1e-4)
    r.reset()
    steps = np.concatenate([r.forward(IDS[i:i + 1], i) for i in range(len(IDS))])
    np.testing.assert_allclose(steps, ref, atol=1e-4)
    q = OnnxLM(build_onnx(src, tmp_path / "q4", Variant("onnx", 4, 32, embedding_bits=4), tmp_path / "cache"))
    assert (q.forward(IDS, 0).argmax(-1) == ref.argmax(-1)).mean() > 0.5


def test_gpt2_to_onnx_is_a_typed_error_naming_the_family(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    from edgeq.llm.api import export_llm
    from edgeq.llm.config import LlmConfig
    from edgeq.llm.source import looks_like_lm

    src = tiny_family("gpt2", tiny_lm["model"], tmp_path / "gpt2")
    assert looks_like_lm(str(src))  # GPT2LMHeadModel is a causal LM without the ...ForCausalLM suffix
    with pytest.raises(ModelSourceError) as e:
        build_onnx(src, tmp_path / "o", Variant("onnx", 32), tmp_path / "cache")
    assert "GPT2LMHeadModel" in e.value.cause and "builder.py" in e.value.cause
    assert "Qwen2ForCausalLM" in e.value.hint and "Gemma3ForCausalLM" in e.value.hint and "pte" in e.value.hint
    with pytest.raises(ModelSourceError):  # refused before any float scoring
        export_llm(LlmConfig(model=str(src), output=tmp_path / "out", calib_text=tiny_lm["calib"],
                             formats=("onnx", "pte")))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["qwen2", "phi3", "gpt2"])
def test_pte_families_match_transformers(kind: str, tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """ExecuTorch through transformers' static-cache wrapper: ~20 s per family on an idle 2-core host."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgeq.llm.pte_export import build_pte
    from edgeq.llm.runners import PteLM

    src = tiny_family(kind, tiny_lm["model"], tmp_path / kind)
    model = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    ref = TorchLM(model, 64).forward(IDS, 0)
    r = PteLM(build_pte(model, AutoTokenizer.from_pretrained(str(src)), tmp_path / f"{kind}.pte",
                        Variant("pte", 32, embedding_bits=0), 64))
    np.testing.assert_allclose(r.forward(IDS, 0), ref, atol=1e-4)
    steps = np.concatenate([r.forward(IDS[i:i + 1], i) for i in range(len(IDS))])
    np.testing.assert_allclose(steps, ref, atol=1e-4)
