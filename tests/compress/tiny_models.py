"""Tiny models for the compression tests, referenced as `path/to/tiny_models.py:NAME`."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-bn-relu → conv-relu → pool → flatten → linear-relu → linear: two conv groups and one FFN group."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(image)))
        x = self.pool(torch.relu(self.c2(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Residual(nn.Module):
    """A residual add ties c1's and c2's channels: neither may be pruned alone; fc1 still can."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(image))
        x = x + torch.relu(self.c2(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(image.flatten(1))))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


def residual() -> nn.Module:
    torch.manual_seed(0)
    return Residual().eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return Mlp().eval()
