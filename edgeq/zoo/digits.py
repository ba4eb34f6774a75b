"""CNNs trained on scikit-learn's ``load_digits`` (1,797 real 8×8 handwritten digits, shipped with sklearn).

Factories for ``edgeq export``: ``edgeq.zoo.digits:digits_cnn`` (≈18 k params, the demo model) and
``edgeq.zoo.digits:digits_wide_cnn`` (≈1.07 M params, the size benchmark). Trained weights are cached under
the user cache dir, keyed by the architecture and training recipe, so the second call is instant.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgeq.cache import cache_dir
from edgeq.npz import save_npz
from edgeq.zoo.weights import load_or_train

# 2: trained on one torch thread (version 1 used the machine's thread count, so the weights, and every quality
# figure measured on them, depended on how many cores trained them)
RECIPE_VERSION = 2
TRAIN_THREADS = 1
INPUT_NAME = "image"


def digits_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images as float32 N×1×8×8 in [0, 1], a stratified 75/25 split."""
    # heavy: scikit-learn, only for the demo's digits data
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    x = np.ascontiguousarray(x)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def write_digits_data(folder: Path) -> tuple[Path, Path]:
    """Write ``calib.npz`` (training split, with labels) and ``eval.npz`` (test split, with labels)."""
    xtr, ytr, xte, yte = digits_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    calib, ev = folder / "digits_calib.npz", folder / "digits_eval.npz"
    for path, x, y in ((calib, xtr, ytr), (ev, xte, yte)):
        # the folder may be the shared user cache (``edgeq demo``): a concurrent reader sees the old file or the
        # new one, never a half-written zip
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        save_npz(tmp, {INPUT_NAME: x, "labels": y})
        os.replace(tmp, path)
    return calib, ev


def _build(width: int, hidden: int):  # type: ignore[no-untyped-def]
    import torch  # heavy: torch, imported only where a model is built or run
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(),
                                      nn.Linear(hidden, 10))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(image))

    return DigitsCNN()


def _train(width: int, hidden: int, epochs: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import torch  # heavy: torch, imported only where a model is built or run

    key = hashlib.sha256(f"{RECIPE_VERSION}-{width}-{hidden}-{epochs}-{seed}-{torch.__version__}".encode()).hexdigest()[:16]
    path = cache_dir("models") / f"digits_cnn_w{width}_h{hidden}_{key}.pt"
    torch.manual_seed(seed)

    def train(model) -> None:  # type: ignore[no-untyped-def]
        threads = torch.get_num_threads()
        torch.set_num_threads(TRAIN_THREADS)  # reductions then sum in one order on any machine
        try:
            _epochs(model)
        finally:
            torch.set_num_threads(threads)

    def _epochs(model) -> None:  # type: ignore[no-untyped-def]
        xtr, ytr, _, _ = digits_arrays()
        x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 64):
                idx = perm[i:i + 64]
                # light augmentation: random 1-pixel shifts make the model less brittle to quantization noise
                xb = torch.roll(x[idx], shifts=(int(torch.randint(-1, 2, (1,), generator=g)),
                                                int(torch.randint(-1, 2, (1,), generator=g))), dims=(2, 3))
                loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()

    return load_or_train(_build(width, hidden), path, train)


def digits_cnn():  # type: ignore[no-untyped-def]
    """The demo model: 2 conv + 2 linear layers, ≈18 k parameters, ≈98 % test accuracy."""
    return _train(width=8, hidden=64, epochs=30)


def digits_wide_cnn():  # type: ignore[no-untyped-def]
    """A ≥1 M-parameter variant (the INT8 size benchmark)."""
    return _train(width=32, hidden=1024, epochs=12)
