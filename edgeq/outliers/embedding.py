"""INT8 embedding tables: one scale per row, a Gather on the quantized table, dequantized after the lookup.

The token table of a small transformer is often half of its weights (all-MiniLM-L6-v2: 11.7 M of 22.7 M), so
leaving it float caps an "INT8" artifact near 0.6x float. The replacement is plain torch (``embedding`` on an
int8 table, a second lookup for the row scales, a multiply), so ONNX (Gather int8 -> Cast -> Mul) and ExecuTorch
(portable ``embedding`` on int8) both store one byte per weight without any format-specific operator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EmbeddingQuantConfig:
    """Quantize every ``nn.Embedding`` with at least ``min_rows`` rows to symmetric INT8, per row."""

    min_rows: int = 1000
    version: int = 1

    def __post_init__(self) -> None:
        if self.min_rows < 1:
            raise UsageError(f"min_rows must be >= 1, got {self.min_rows}")

    def to_dict(self) -> JSONObject:
        return asdict(self)


def _quantized_embedding_class() -> type:
    import torch  # heavy: torch, imported only where a model is built or run

    class QuantizedEmbedding(torch.nn.Module):
        """``table_int8[ids] * row_scale[ids]``: the lookup reads one byte per weight."""

        qweight: torch.Tensor
        scale: torch.Tensor

        def __init__(self, emb: torch.nn.Embedding) -> None:
            super().__init__()
            w = emb.weight.detach().float()
            scale = (w.abs().amax(1, keepdim=True) / 127.0).clamp(min=1e-12)
            self.register_buffer("qweight", (w / scale).round().clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale.to(emb.weight.dtype))
            self.padding_idx = emb.padding_idx
            self.embedding_dim = emb.embedding_dim
            self.num_embeddings = emb.num_embeddings

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            rows = torch.nn.functional.embedding(ids, self.qweight)
            return rows.to(self.scale.dtype) * torch.nn.functional.embedding(ids, self.scale)

    return QuantizedEmbedding


def quantize_embeddings(model: torch.nn.Module, cfg: EmbeddingQuantConfig = EmbeddingQuantConfig()
                        ) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Replace large ``nn.Embedding`` tables in place; returns (model, one log entry per table)."""
    import torch  # heavy: torch, imported only where a model is built or run

    cls = _quantized_embedding_class()
    log: list[JSONObject] = []
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.Embedding) and mod.num_embeddings >= cfg.min_rows:
            q = cls(mod)
            with torch.no_grad():
                err = float((q(torch.arange(mod.num_embeddings)) - mod.weight).norm() / mod.weight.norm().clamp(min=1e-12))
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, q)
            log.append({"table": name, "rows": mod.num_embeddings, "dim": mod.embedding_dim,
                        "relative_error": round(err, 6)})
    return model, log
