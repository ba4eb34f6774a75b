"""The transformers of :mod:`edgeq.zoo.text`: a BERT-style encoder and a GPT-style decoder (trained there)."""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention written out (MatMul / Softmax) so ONNX and PT2E see the plain ops."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, self.dh).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) * (self.dh ** -0.5) + bias
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.o(ctx.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, pre_norm: bool) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = Attention(d, heads)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:  # GPT-2 style
            x = x + self.attn(self.ln1(x), bias)
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self.attn(x, bias))  # BERT style (post-norm)
        return self.ln2(x + self.ff(x))


class TextEncoder(nn.Module):
    """BERT-style: (input_ids, attention_mask) -> mean-pooled sentence embedding."""

    def __init__(self, vocab: int, seq_len: int, d: int = 64, heads: int = 4, ff: int = 256,
                 layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, heads, ff, pre_norm=False) for _ in range(layers))
        self.mlm = nn.Linear(d, vocab)  # training head only; not part of the exported graph

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.ln(self.tok(input_ids) + self.pos(pos)[None])
        # BERT's extended attention mask: padded keys get a large negative additive bias
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for blk in self.blocks:
            x = blk(x, bias)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.hidden(input_ids, attention_mask)
        m = attention_mask[:, :, None].to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextDecoder(nn.Module):
    """GPT-style causal LM: input_ids -> next-token logits at every position."""

    causal_bias: torch.Tensor  # a buffer: typed here, registered in __init__

    def __init__(self, vocab: int, seq_len: int, d: int = 64, heads: int = 4, ff: int = 256,
                 layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff, pre_norm=True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        causal = torch.triu(torch.full((seq_len, seq_len), -10000.0), diagonal=1)
        self.register_buffer("causal_bias", causal, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        x = self.tok(input_ids) + self.pos(pos)[None]
        bias = self.causal_bias[:t, :t]
        for blk in self.blocks:
            x = blk(x, bias)
        return self.head(self.ln_f(x))
