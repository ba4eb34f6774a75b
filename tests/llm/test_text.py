"""Text windows: fixed length, disjoint calibration / evaluation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import DataError
from edgeq.llm.text import calib_eval_windows, windows


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

