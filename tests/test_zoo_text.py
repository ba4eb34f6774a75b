"""The text zoo: a deterministic tokenizer over the Python docs, trained encoder/decoder, exportable graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.zoo import text


def test_tokenizer_is_deterministic_and_covers_the_corpus() -> None:
    tok = text.tokenizer()
    assert len(tok.vocab) == text.VOCAB_SIZE and tok.vocab[: 4] == list(text.SPECIALS)
    assert len(set(tok.vocab)) == len(tok.vocab)
    ids = tok.encode("The return statement returns from the current function call")
    assert text.UNK not in ids and tok.decode(ids).startswith("the return statement")
    assert len(tok.encode("-----")) == 1 and len(tok.encode("-+")) == 2  # a run of one character = one token
    all_ids, mask = text.sentence_arrays("train")
    assert (all_ids[mask == 1] == text.UNK).mean() < 0.08  # the vocabulary covers > 92 % of real tokens


def test_data_files_have_fixed_shapes_and_held_out_eval(tmp_path: Path) -> None:
    calib, ev = text.write_text_data(tmp_path, n_calib=16, n_eval=24)
    with np.load(calib) as c, np.load(ev) as e:
        assert set(c.files) == {"input_ids", "attention_mask"}
        assert c["input_ids"].shape == (16, text.SEQ_LEN) and e["input_ids"].shape == (24, text.SEQ_LEN)
        assert c["input_ids"].dtype == np.int64 and c["attention_mask"].dtype == np.int64
        assert ((c["input_ids"] != text.PAD) == c["attention_mask"]).all()
        assert (c["input_ids"][:, 0] == text.CLS).all()
    tr = {tuple(r) for r in text.sentence_arrays("train")[0]}
    te = [tuple(r) for r in text.sentence_arrays("eval")[0]]
    assert sum(r in tr for r in te) < 0.05 * len(te)  # eval paragraphs are held out (a few repeat verbatim)
    dcal, _ = text.write_text_data(tmp_path, model="decoder", n_calib=8, n_eval=8)
    with np.load(dcal) as d:
        assert d["input_ids"].shape == (8, text.SEQ_LEN) and d["labels"].shape == (8,)
    with pytest.raises(ValueError):
        text.write_text_data(tmp_path, model="seq2seq")


def test_encoder_is_trained_and_exports() -> None:
    import torch

    enc = text.text_encoder()
    ids_np, mask_np = text.sentence_arrays("eval")
    ids, mask = torch.from_numpy(ids_np[:200]), torch.from_numpy(mask_np[:200])
    g = torch.Generator().manual_seed(1)
    x = ids.clone()
    pick = (torch.rand(x.shape, generator=g) < 0.15) & (mask == 1) & (x != text.CLS)
    x[pick] = text.MASK
    with torch.no_grad():
        pred = enc.mlm(enc.hidden(x, mask)).argmax(-1)
    acc = (pred[pick] == ids[pick]).float().mean().item()
    common = torch.bincount(ids[mask == 1]).argmax()
    baseline = (ids[pick] == common).float().mean().item()
    assert acc > baseline + 0.03, (acc, baseline)  # masked-token prediction learned more than the unigram prior
    ep = torch.export.export(enc, (ids[:2], mask[:2]))
    out = ep.module()(ids[:2], mask[:2])
    assert out.shape == (2, 64) and torch.allclose(out, enc(ids[:2], mask[:2]), atol=1e-5)
    # padding does not leak into the embedding: the same sentence with more padding gives the same vector
    with torch.no_grad():
        a = enc(ids[:1], mask[:1])
        short = int(mask[0].sum())
        ids2, m2 = ids[:1].clone(), mask[:1].clone()
        ids2[0, short:] = 5  # garbage in padded positions
        b = enc(ids2, m2)
    assert torch.allclose(a, b, atol=1e-4)


def test_decoder_is_trained_and_exports() -> None:
    import torch

    dec = text.text_decoder()
    win = torch.from_numpy(text.stream_windows("eval")[:200])
    with torch.no_grad():
        logits = dec(win[:, :-1])
    acc = (logits.argmax(-1) == win[:, 1:]).float().mean().item()
    common = torch.bincount(win.flatten()).argmax()
    assert acc > (win[:, 1:] == common).float().mean().item() + 0.05, acc
    # causal: changing a later token does not change earlier logits
    x = win[:1, :-1].clone()
    y = x.clone()
    y[0, 20] = (y[0, 20] + 1) % text.VOCAB_SIZE
    with torch.no_grad():
        assert torch.allclose(dec(x)[0, :20], dec(y)[0, :20], atol=1e-5)
    ep = torch.export.export(dec, (x,))
    assert ep.module()(x).shape == (1, text.SEQ_LEN, text.VOCAB_SIZE)
