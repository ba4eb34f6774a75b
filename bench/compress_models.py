"""A model for the compression benchmark on scikit-learn's breast-cancer set (569 real samples, 30 features):
a standardised-input MLP trained once in seconds and cached like the digits CNNs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.cache import cache_dir
from edgeq.zoo.weights import load_or_train

RECIPE = 1
HIDDEN = 512


def cancer_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    d = load_breast_cancer()
    x = d.data.astype(np.float64)
    xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=0.3, random_state=seed,
                                          stratify=d.target)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9  # statistics of the training split only
    return (((xtr - mu) / sd).astype(np.float32), ytr, ((xte - mu) / sd).astype(np.float32), yte)


def write_cancer_data(folder: Path) -> tuple[Path, Path]:
    xtr, ytr, xte, yte = cancer_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    calib, ev = folder / "cancer_calib.npz", folder / "cancer_eval.npz"
    np.savez(calib, features=xtr, labels=ytr)
    np.savez(ev, features=xte, labels=yte)
    return calib, ev


def cancer_mlp() -> Any:
    import torch
    from torch import nn

    class CancerMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(30, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                     nn.Linear(HIDDEN, 2))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.net(features)

    key = hashlib.sha256(f"{RECIPE}-{HIDDEN}-{torch.__version__}".encode()).hexdigest()[:16]

    def train(model: Any) -> None:
        torch.manual_seed(0)
        xtr, ytr, _, _ = cancer_arrays()
        x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        model.train()
        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return load_or_train(CancerMLP(), cache_dir("models") / f"cancer_mlp_{key}.pt", train)
