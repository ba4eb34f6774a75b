"""Plain text files -> token windows of a fixed length (calibration and evaluation of LMs).

Each window is tokenized the way the model was trained: when the tokenizer puts a BOS token in front of a text
(``add_special_tokens=True``: Llama, Gemma, Mistral ... do; GPT-2, Qwen2, SmolLM2 do not), every window starts
with BOS followed by ``seq_len - 1`` text tokens. Without it, a model trained on BOS-prefixed text scores every
window as if it began mid-document (one model measured 85.6 perplexity without BOS, 13.2 with it), and both the
float baseline and the quantized ratios are judged on text the model never saw in that form."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.errors import DataError
from edgeq.llm.hf import HFTokenizer

_PROBE = "The"  # any short text: only what the tokenizer puts in front of it matters


def bos_id(tokenizer: HFTokenizer) -> int | None:
    """The BOS id the model expects in front of a text, or None when it is trained without one.

    The tokenizer decides (its post-processor / ``add_bos_token``, which transformers sets from the model's own
    tokenizer files or GGUF ``tokenizer.ggml.add_bos_token``): BOS is used exactly when encoding with special
    tokens puts ``bos_token_id`` first and encoding without them does not. A BOS id in the model config alone
    (Qwen2 has one it never prepends) does not count."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_special = list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    if with_special[:1] == [bos] and plain[:1] != [bos]:
        return int(bos)
    return None


def tokenize_file(tokenizer: HFTokenizer, path: Path) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError(f"text file not found: {path}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}") from e
    if not text.strip():
        raise DataError(f"{path} is empty")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def windows(ids: np.ndarray, seq_len: int, count: int, where: str, bos: int | None = None) -> np.ndarray:
    """Non-overlapping windows [count, seq_len] spread evenly over ``ids``: a text's first windows share one topic
    (and a search that picks on them generalises worse), so the sample covers the whole file. With BOS, each
    window is BOS + ``seq_len - 1`` text tokens."""
    if seq_len < 2:
        raise DataError(f"--seq-len must be >= 2 (got {seq_len})")
    body = seq_len - (bos is not None)
    have = len(ids) // body
    if have < 1:
        raise DataError(f"{where}: {len(ids)} tokens, fewer than one window of {seq_len}",
                        "give a longer text file or a smaller --seq-len")
    n = min(count, have)
    slots = np.linspace(0, have - 1, n).round().astype(np.int64)  # distinct, since n <= have
    return _with_bos(np.stack([ids[i * body:(i + 1) * body] for i in slots]), bos)


def _with_bos(rows: np.ndarray, bos: int | None) -> np.ndarray:
    if bos is None:
        return rows
    return np.concatenate([np.full((len(rows), 1), bos, dtype=np.int64), rows], axis=1)


def calib_eval_windows(tokenizer: HFTokenizer, calib: Path, eval_: Path | None, seq_len: int, n_calib: int,
                       n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation windows (BOS-prefixed when the model uses BOS, see ``bos_id``). Without an eval
    file, eval comes from the far end of the calibration text so the two never share a text token."""
    bos = bos_id(tokenizer)
    c = tokenize_file(tokenizer, calib)
    if eval_ is not None:
        return (windows(c, seq_len, n_calib, str(calib), bos),
                windows(tokenize_file(tokenizer, eval_), seq_len, n_eval, str(eval_), bos))
    body = seq_len - (bos is not None)
    total = len(c) // body
    if total < 2:
        raise DataError(f"{calib}: {len(c)} tokens is too few to split into calibration and evaluation windows "
                        f"of {seq_len}", "pass --eval-text or a smaller --seq-len")
    n_e = min(n_eval, total // 2)
    n_c = min(n_calib, total - n_e)
    ev = _with_bos(c[len(c) - n_e * body:].reshape(n_e, body).copy(), bos)
    return windows(c[: len(c) - n_e * body], seq_len, n_c, str(calib), bos), ev
