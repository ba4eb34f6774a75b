"""Writing named arrays to an ``.npz``: the one typed door to ``np.savez``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez(path, **arrays)``: each array stored under its key."""
    # numpy's stub types **kwds as if allow_pickle (a bool) were among them, so no dict of arrays fits it; this
    # untyped view of the function is the boundary.
    savez: Callable[..., None] = np.savez
    savez(path, **arrays)
