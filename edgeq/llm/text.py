"""Plain text files -> token windows of a fixed length (calibration and evaluation of LMs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import DataError


def tokenize_file(tokenizer: Any, path: Path) -> np.ndarray:
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


def windows(ids: np.ndarray, seq_len: int, count: int, where: str) -> np.ndarray:
    """Non-overlapping windows [count, seq_len] spread evenly over ``ids``: a text's first windows share one topic
    (and a search that picks on them generalises worse), so the sample covers the whole file."""
    if seq_len < 2:
        raise DataError(f"--seq-len must be >= 2 (got {seq_len})")
    have = len(ids) // seq_len
    if have < 1:
        raise DataError(f"{where}: {len(ids)} tokens, fewer than one window of {seq_len}",
                        "give a longer text file or a smaller --seq-len")
    n = min(count, have)
    slots = np.linspace(0, have - 1, n).round().astype(np.int64)  # distinct, since n <= have
    return np.stack([ids[i * seq_len:(i + 1) * seq_len] for i in slots])


def calib_eval_windows(tokenizer: Any, calib: Path, eval_: Path | None, seq_len: int, n_calib: int,
                       n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation windows. Without an eval file, eval comes from the far end of the calibration
    text so the two never share a token."""
    c = tokenize_file(tokenizer, calib)
    if eval_ is not None:
        return windows(c, seq_len, n_calib, str(calib)), windows(tokenize_file(tokenizer, eval_), seq_len, n_eval,
                                                                  str(eval_))
    total = len(c) // seq_len
    if total < 2:
        raise DataError(f"{calib}: {len(c)} tokens is too few to split into calibration and evaluation windows "
                        f"of {seq_len}", "pass --eval-text or a smaller --seq-len")
    n_e = min(n_eval, total // 2)
    n_c = min(n_calib, total - n_e)
    ev = c[len(c) - n_e * seq_len:].reshape(n_e, seq_len).copy()
    return windows(c[: len(c) - n_e * seq_len], seq_len, n_c, str(calib)), ev
