"""Text windows: fixed length, disjoint calibration / evaluation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import DataError
from edgeq.llm.text import bos_id, calib_eval_windows, tokenize_file, windows
from tests.llm.conftest import english_text


class _CharTok:
    """One token per character: makes the window arithmetic visible."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def test_windows_are_non_overlapping_spread_and_capped() -> None:
    w = windows(np.arange(100), 16, 3, "x")  # 6 window slots: the first, a middle and the last
    assert w.shape == (3, 16) and list(w[:, 0]) == [0, 32, 80]
    assert all((row == np.arange(row[0], row[0] + 16)).all() for row in w)
    assert windows(np.arange(100), 16, 99, "x").shape == (6, 16)


def test_eval_tail_is_disjoint_from_calibration(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("".join(chr(0x4E00 + i) for i in range(400)))
    c, e = calib_eval_windows(_CharTok(), f, None, 32, 8, 4)
    assert c.shape == (8, 32) and e.shape == (4, 32)
    assert not set(c.ravel()) & set(e.ravel())


@pytest.mark.parametrize("content,seq", [("", 8), ("abc", 8), ("abcdefgh", 1)])
def test_bad_text_raises_data_error(tmp_path: Path, content: str, seq: int) -> None:
    f = tmp_path / "t.txt"
    f.write_text(content)
    with pytest.raises(DataError):
        calib_eval_windows(_CharTok(), f, f, seq, 2, 2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        calib_eval_windows(_CharTok(), tmp_path / "nope.txt", None, 8, 2, 2)



def _bpe(with_bos: bool) -> object:
    """A real byte-level BPE tokenizer with a BOS token; WITH_BOS: its post-processor prepends it (the Llama /
    Gemma convention), else it only knows the token (the GPT-2 / Qwen2 / SmolLM2 convention)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([english_text(5000)], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if with_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("with_bos", [True, False])
def test_windows_start_with_bos_exactly_when_the_tokenizer_adds_one(tmp_path: Path, with_bos: bool) -> None:
    tok = _bpe(with_bos)
    f = tmp_path / "t.txt"
    f.write_text(english_text(6000, 9000))
    assert bos_id(tok) == (0 if with_bos else None)
    text = tokenize_file(tok, f)
    assert 0 not in text  # the text itself carries no BOS: the windows add it
    for c, e in (calib_eval_windows(tok, f, None, 16, 4, 2), calib_eval_windows(tok, f, f, 16, 4, 2)):
        assert c.shape == (4, 16) and e.shape == (2, 16)
        for w in (*c, *e):
            assert (w[0] == 0) == with_bos and 0 not in w[1:]
            body = w[1:] if with_bos else w
            # the rest is a contiguous run of the text's tokens
            starts = [i for i in range(len(text) - len(body) + 1) if (text[i:i + len(body)] == body).all()]
            assert starts, "a window is not a slice of the text"
