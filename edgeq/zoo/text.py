"""Small transformers trained on real English text that ships with Python (``pydoc_data.topics``).

``pydoc_data.topics.topics`` is the Python language reference (≈465 k characters of real prose and code), so no
download is needed. Factories for ``edgeq export``:

- ``edgeq.zoo.text:text_encoder`` — BERT-style sentence encoder: token + position embeddings, 2 post-norm
  encoder blocks with hand-written attention (additive ``(1 - mask) * -1e4`` mask arithmetic, Softmax,
  LayerNorm, GELU, residual adds — exactly the patterns that are fragile under static INT8), mean-pooled over
  ``attention_mask``. Inputs ``input_ids`` and ``attention_mask`` (int64, ``[batch, 32]``), output
  ``embedding`` ``[batch, 64]``. Trained with masked-token prediction.
- ``edgeq.zoo.text:text_decoder`` — GPT-style causal LM: ``input_ids`` ``[batch, 32]`` -> ``logits``
  ``[batch, 32, vocab]``, pre-norm blocks, trained on next-token prediction.

``write_text_data(folder)`` writes the encoder's calibration / evaluation ``.npz`` files (keys ``input_ids``,
``attention_mask``); ``write_text_data(folder, model="decoder")`` writes the decoder's (key ``input_ids`` and
``labels`` = the next token at the last position). Weights are cached under the user cache dir keyed by the
recipe, so only the first call trains (≈10-30 s on 2 cores).
"""

from __future__ import annotations

import collections
import hashlib
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgeq.cache import cache_dir
from edgeq.npz import save_npz
from edgeq.zoo.text_models import TextDecoder, TextEncoder
from edgeq.zoo.weights import load_or_train

RECIPE_VERSION = 2
SEQ_LEN = 32
VOCAB_SIZE = 1024
PAD, UNK, CLS, MASK = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[MASK]")
# words, numbers, or one run of the same punctuation character ("-----" is one token, not five)
_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+|([^\sa-z0-9])\1*")


def corpus_text() -> str:
    """The Python reference documentation shipped with CPython, in a fixed (sorted-topic) order."""
    # heavy: ~1 MB of text, loaded only when the text zoo builds its corpus
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _words(text: str) -> list[str]:
    return [m.group(0) for m in _TOKEN_RE.finditer(text.lower())]


class Tokenizer:
    """Deterministic word-level tokenizer: the 1,020 most frequent corpus tokens + 4 specials (ties by name)."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, UNK) for w in _words(text)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != PAD)


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    counts = collections.Counter(_words(corpus_text()))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return Tokenizer(list(SPECIALS) + [w for w, _ in ranked[: VOCAB_SIZE - len(SPECIALS)]])


@lru_cache(maxsize=1)
def _paragraph_ids() -> tuple[tuple[int, ...], ...]:
    """Tokenized paragraphs (blank-line separated) with at least 4 tokens, in corpus order.

    The reference docs repeat paragraphs across topics (a third of the held-out rows had a verbatim twin in
    training); paragraphs whose first 31 tokens were seen before are dropped so the eval split stays held out.
    """
    tok = tokenizer()
    out, seen = [], set()
    for para in re.split(r"\n\s*\n", corpus_text()):
        ids = tuple(tok.encode(para))
        if len(ids) >= 4 and ids[: SEQ_LEN - 1] not in seen:
            seen.add(ids[: SEQ_LEN - 1])
            out.append(ids)
    return tuple(out)


def sentence_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) for the encoder: [CLS] + the first 31 tokens of each paragraph, right-padded.

    ``split``: ``"train"`` (4 of every 5 paragraphs) or ``"eval"`` (every 5th paragraph, held out of training).
    """
    paras = [p for i, p in enumerate(_paragraph_ids()) if (i % 5 == 4) == (split == "eval")]
    ids = np.full((len(paras), SEQ_LEN), PAD, dtype=np.int64)
    for r, p in enumerate(paras):
        row = (CLS,) + p[: SEQ_LEN - 1]
        ids[r, : len(row)] = row
    return ids, (ids != PAD).astype(np.int64)


def stream_windows(split: str) -> np.ndarray:
    """Fixed 33-token windows of the token stream (32 inputs + 1 target) for the decoder, split like paragraphs."""
    paras = [p for i, p in enumerate(_paragraph_ids()) if (i % 5 == 4) == (split == "eval")]
    stream = np.fromiter((t for p in paras for t in p), dtype=np.int64)
    n = (len(stream) - 1) // SEQ_LEN
    starts = np.arange(n) * SEQ_LEN
    return np.stack([stream[s : s + SEQ_LEN + 1] for s in starts])


def write_text_data(folder: Path, model: str = "encoder", n_calib: int = 128,
                    n_eval: int = 256) -> tuple[Path, Path]:
    """Write ``{model}_calib.npz`` (training paragraphs) and ``{model}_eval.npz`` (held-out paragraphs).

    Encoder files hold ``input_ids`` and ``attention_mask``; decoder files hold ``input_ids`` and ``labels``
    (the true next token after the window, so task accuracy = next-token accuracy at the last position).
    Samples are an evenly spaced, deterministic subset so short and long paragraphs are both represented.
    """
    if model not in ("encoder", "decoder"):
        raise ValueError(f"model must be 'encoder' or 'decoder', got {model!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", n_calib), ("eval", n_eval)):
        if model == "encoder":
            ids, mask = sentence_arrays(split)
            pick = np.linspace(0, len(ids) - 1, min(n, len(ids))).astype(np.int64)
            arrays = {"input_ids": ids[pick], "attention_mask": mask[pick]}
        else:
            win = stream_windows(split)
            pick = np.linspace(0, len(win) - 1, min(n, len(win))).astype(np.int64)
            arrays = {"input_ids": np.ascontiguousarray(win[pick, :SEQ_LEN]),
                      "labels": np.ascontiguousarray(win[pick, SEQ_LEN])}
        path = folder / f"text_{model}_{'calib' if split == 'train' else 'eval'}.npz"
        save_npz(path, arrays)
        paths.append(path)
    return paths[0], paths[1]


def _cache_path(kind: str, epochs: int, seed: int) -> Path:
    import torch  # heavy: torch, imported only where a model is built or run

    key = hashlib.sha256(f"{RECIPE_VERSION}-{kind}-{epochs}-{seed}-{torch.__version__}".encode()).hexdigest()[:16]
    return cache_dir("models") / f"text_{kind}_{key}.pt"


def _load_or_train(kind: str, epochs: int, seed: int):  # type: ignore[no-untyped-def]
    import torch  # heavy: torch, imported only where a model is built or run

    torch.manual_seed(seed)
    model = TextEncoder(VOCAB_SIZE, SEQ_LEN) if kind == "encoder" else TextDecoder(VOCAB_SIZE, SEQ_LEN)
    path = _cache_path(kind, epochs, seed)

    def train(m) -> None:  # type: ignore[no-untyped-def]
        # 2 threads: the machines this runs on (CI, laptops running tests) are small and shared
        threads = torch.get_num_threads()
        torch.set_num_threads(min(threads, 2))
        try:
            (_train_encoder if kind == "encoder" else _train_decoder)(m, epochs, seed)
        finally:
            torch.set_num_threads(threads)

    return load_or_train(model, path, train)


def _train_encoder(model: TextEncoder, epochs: int, seed: int) -> None:
    """Masked-token prediction (BERT's objective): 15 % of real tokens -> [MASK], predict them."""
    import torch  # heavy: torch, imported only where a model is built or run
    import torch.nn.functional as F

    ids_np, mask_np = sentence_arrays("train")
    ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps = epochs * ((len(ids) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(ids), generator=g)
        for i in range(0, len(ids), 64):
            idx = perm[i : i + 64]
            x, m = ids[idx].clone(), mask[idx]
            pick = (torch.rand(x.shape, generator=g) < 0.15) & (m == 1) & (x != CLS)
            target = torch.where(pick, x, torch.full_like(x, -100))
            x[pick] = MASK
            logits = model.mlm(model.hidden(x, m))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def _train_decoder(model: TextDecoder, epochs: int, seed: int) -> None:
    """Next-token prediction over 33-token windows of the training stream."""
    import torch  # heavy: torch, imported only where a model is built or run
    import torch.nn.functional as F

    win = torch.from_numpy(stream_windows("train"))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps = epochs * ((len(win) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(win), generator=g)
        for i in range(0, len(win), 64):
            w = win[perm[i : i + 64]]
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def text_encoder():  # type: ignore[no-untyped-def]
    """The BERT-style sentence encoder (≈200 k parameters), trained with masked-token prediction."""
    return _load_or_train("encoder", epochs=12, seed=0)


def text_decoder():  # type: ignore[no-untyped-def]
    """The GPT-style causal LM (≈230 k parameters), trained on next-token prediction."""
    return _load_or_train("decoder", epochs=5, seed=0)
