"""A local Hugging Face model directory as MODEL: loaded offline from safetensors, example inputs from its own
tokenizer, exported end to end (a tiny BERT written with save_pretrained, so the test stays fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import ModelSourceError

pytestmark = pytest.mark.slow
WORDS = ["the", "model", "runs", "on", "a", "phone", "kernels", "decide", "accuracy", "int8", "arm", "board"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    d = tmp_path_factory.mktemp("hf") / "tiny-bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).eval().save_pretrained(str(d), safe_serialization=True)
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return d


def test_hf_dir_loads_with_tokenizer_examples(tiny_bert: Path) -> None:
    from edgeq.source import load_source

    s = load_source(str(tiny_bert))
    assert s.input_names == ["input_ids", "attention_mask"]
    assert s.example_inputs is not None and s.example_inputs["input_ids"].shape == (2, 32)
    assert s.example_inputs["input_ids"].dtype == np.int64


def test_pickled_weights_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    from edgeq.source import load_source

    (tmp_path / "config.json").write_text((tiny_bert / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelSourceError, match="no model.safetensors"):
        load_source(str(tmp_path))


def test_export_hf_dir_end_to_end(tiny_bert: Path, tmp_path: Path) -> None:
    import transformers

    import edgeq
    from edgeq.config import SearchOptions

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_bert), local_files_only=True)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(96)]
    enc = tok(texts, padding="max_length", truncation=True, max_length=32, return_tensors="np")
    np.savez(tmp_path / "calib.npz", input_ids=enc["input_ids"].astype(np.int64),
             attention_mask=enc["attention_mask"].astype(np.int64))
    res = edgeq.export(str(tiny_bert), calib=str(tmp_path / "calib.npz"), output=tmp_path / "out",
                       quant=edgeq.QuantOptions(mode="dynamic"), search=SearchOptions(mode="off"),
                       budget=edgeq.Budget(min_cosine=0.0))
    m = res.manifest
    assert m["source"]["ref"] == str(tiny_bert)
    assert [i["name"] for i in m["signature"]["inputs"]] == ["input_ids", "attention_mask"]
    assert m["signature"]["outputs"][0]["shape"][1:] == [32]  # mean-pooled sentence embedding
    assert (tmp_path / "out" / "model.int8-dynamic.onnx").is_file()
