"""Model factories used by tests through `path/to/fixture_models.py:NAME` references."""

from __future__ import annotations

import torch
from torch import nn

NOT_CALLABLE = 42


def not_a_module():  # type: ignore[no-untyped-def]
    return {"weights": [1, 2, 3]}


def raises():  # type: ignore[no-untyped-def]
    raise RuntimeError("checkpoint missing")


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


def branchy():  # type: ignore[no-untyped-def]
    return Branchy()


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.Linear(6, 4)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.l(torch.cat([left, right], dim=1))


def two_inputs_with_example():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return TwoInputs().eval(), (torch.randn(2, 3), torch.randn(2, 3))


def slow_mlp():  # type: ignore[no-untyped-def]
    """Big enough that calibration takes a few seconds (for the Ctrl-C test)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                         nn.Linear(2048, 10)).eval()


class TinyCnn(nn.Module):
    """A 4-channel conv + linear on 8×8 digits: exports and quantizes in seconds (per-target app tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


def tiny_cnn():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return TinyCnn().eval()
class OutlierMLP(nn.Module):
    """Input channel 0 is ~1000x the others (a planted activation outlier): one static INT8 scale for the input
    rounds every other channel to zero, so the first INT8 model misses a tight cosine budget by a wide margin."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(64, 8)
        with torch.no_grad():
            self.fc1.weight[:, 0] *= 1e-3  # the outlier channel contributes like the others

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def outlier_mlp():  # type: ignore[no-untyped-def]
    return OutlierMLP()


class TinyEncoder(nn.Module):
    """A 2-layer post-norm transformer encoder with a 1200-row token table, mean pooling and L2 normalisation:
    the shape of a sentence encoder. Two LayerNorm output channels are scaled 40x (the activation outliers real
    BERTs carry), so per-tensor INT8 inputs to the next Linear crush every other channel."""

    def __init__(self, vocab: int = 1200, dim: int = 32, layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, 4, dim * 4, dropout=0.0, batch_first=True, norm_first=False)
            for _ in range(layers))
        with torch.no_grad():
            for layer in self.layers:
                layer.norm1.weight[:2] *= 40.0
                layer.linear1.weight[:, :2] /= 40.0  # the outlier channels contribute like the others

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids)
        for layer in self.layers:
            # the fast path (torch._transformer_encoder_layer_fwd) does not export: use the plain ops
            h = layer.norm1(h + layer._sa_block(h, None, None))
            h = layer.norm2(h + layer._ff_block(h))
        return torch.nn.functional.normalize(h.mean(1), dim=-1)


def tiny_encoder():  # type: ignore[no-untyped-def]
    return TinyEncoder().eval()
