"""Trained weights cached in the user cache dir: load them safely, or train once and save atomically."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound="torch.nn.Module")


def load_or_train(model: M, path: Path, train: Callable[[M], None]) -> M:
    """Load ``path`` into ``model`` (``weights_only``: no pickle code runs), else ``train(model)`` and save it."""
    import torch  # heavy: torch, imported only where a model is built or run

    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except Exception:  # noqa: BLE001  a corrupt or stale cache entry is simply retrained
            path.unlink(missing_ok=True)
    train(model)
    model.eval()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent first uses must not share a temp file
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model
