"""GPTQ (Frantar et al. 2022) on the torch model, before either format's builder: each decoder block's linears are
rounded to the 4-bit grid column by column, the rounding error of each column pushed onto the columns not yet
rounded through the inverse Hessian of the block's inputs on the calibration windows. Blocks go in order, each
seeing the already-rounded blocks before it (sequential GPTQ). ``act_order`` rounds the columns with the largest
Hessian diagonal first; the group grids are fixed from the float weights beforehand ("static groups"), so the
layout stays the contiguous blocks MatMulNBits and torchao store.

The result is float weights that lie on that grid: the format's own round-to-nearest quantizer of the same group
size and symmetry then stores them. A group whose rounded values no longer reach the ends of its range is
re-rounded by that quantizer on the finer grid it picks (SmolLM2-135M, asymmetric block 32: 19 % of the groups;
the error is under half a step of the finer grid); storing GPTQ's own codes and grid would avoid it. Why here and not onnxruntime's GPTQ: that one runs the whole ONNX
graph once per MatMul input per calibration sample (~120 full passes per window for a 30-layer model) and
quantizes with the float inputs of every layer, not the rounded ones."""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import QuantizationError, UsageError
from edgeq.llm.source import LoadedLM, save_hf_folder

if TYPE_CHECKING:  # annotations only: torch is imported where a model is quantized
    from torch import Tensor
    from torch.nn import Linear, Module

DAMP = 0.01  # of the mean Hessian diagonal, added to its diagonal (the paper's default)
BLOCK = 128  # columns rounded together before the lazy update of the rest (speed only)


def group_grid(w: Tensor, group: int, symmetric: bool, bits: int = 4) -> tuple[Tensor, Tensor]:
    """(scale, zero) per output row and input group of W [out, in], chosen so that the format's quantizer, picking
    its own grid from the rounded weights, picks this one again whenever a group still reaches an end of its range.
    Asymmetric = onnxruntime's RTN: the group's [min, max] over 2^bits - 1 steps, integer zero point. Symmetric =
    torchao's SYMMETRIC_NO_CLIPPING_ERR: max(-min / 2^(bits-1), max / (2^(bits-1) - 1)), zero at 2^(bits-1)
    (plain max|w| / 7.5 is never re-picked: a rounded group's max|w| is a whole number of steps)."""
    import torch  # heavy: torch, only where a model is quantized

    out, n = w.shape
    g = w.reshape(out, n // group, group)
    maxq = 2 ** bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        scale = torch.maximum(-g.amin(-1) / half, g.amax(-1) / (half - 1)).clamp(min=1e-8)
        return scale, torch.full_like(scale, half)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / maxq).clamp(min=1e-8)
    return scale, torch.round(-lo / scale).clamp(0, maxq)


def fake_4bit(w: Tensor, group: int) -> Tensor:
    """W rounded to the symmetric 4-bit grid of groups of GROUP inputs (GPTQ's and torchao's), as float."""
    import torch  # heavy: torch, only where a model is run

    scale, zero = group_grid(w.float(), group, symmetric=True)
    g = w.float().reshape(w.shape[0], -1, group)
    q = torch.clamp(torch.round(g / scale[..., None]) + zero[..., None], 0, 15)
    return ((q - zero[..., None]) * scale[..., None]).reshape(w.shape).to(w.dtype)


def _round(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    import torch  # heavy: torch, only where a model is quantized

    q = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return (q - zero) * scale


def gptq_weight(w: Tensor, h: Tensor, group: int, symmetric: bool, act_order: bool, bits: int = 4) -> Tensor:
    """W [out, in] rounded by GPTQ with the Hessian H [in, in] of its inputs; returns the rounded float weight."""
    import torch  # heavy: torch, only where a model is quantized

    w = w.detach().float().clone()
    h = h.clone()
    n = w.shape[1]
    if n % group:
        raise UsageError(f"GPTQ groups of {group} do not divide {n} input features")
    scale, zero = group_grid(w, group, symmetric, bits)
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(n)
    w, h = w[:, perm], h[perm][:, perm]
    h += DAMP * torch.mean(torch.diag(h)) * torch.eye(n)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i1 in range(0, n, BLOCK):
        i2 = min(i1 + BLOCK, n)
        w1, err = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1)
        hi = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            g = int(perm[i1 + i]) // group
            qc = _round(w1[:, i], scale[:, g], zero[:, g], bits)
            q[:, i1 + i] = qc
            e = (w1[:, i] - qc) / hi[i, i]
            w1[:, i:] -= e[:, None] * hi[i, i:][None, :]
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return q[:, torch.argsort(perm)]


def decoder_blocks(model: Module) -> list[Module]:
    """The decoder blocks, in order (the ModuleList whose name ends in ``layers`` or ``h``)."""
    import torch  # heavy: torch, only where a model is quantized

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and re.search(r"(?:^|\.)(?:layers|h)$", name) and len(m):
            return list(m)
    raise UsageError("GPTQ found no decoder block list (…layers / …h) in this model")


class _Stop(Exception):
    """Raised by the first block's hook: the model's forward is needed only up to there."""


def _block_inputs(model: Module, first: Module, ids: Tensor) -> tuple[list[Tensor], list[dict[str, object]]]:
    """The first decoder block's hidden-state input and keyword arguments (mask, RoPE tables, positions) for
    each window of IDS: from here on each block runs alone on the previous block's outputs."""
    import torch  # heavy: torch, only where a model is quantized

    xs: list[Tensor] = []
    kws: list[dict[str, object]] = []

    def grab(_m: Module, args: tuple[Tensor, ...], kwargs: dict[str, object]) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        if not isinstance(hidden, torch.Tensor):
            raise QuantizationError(f"GPTQ: the first decoder block got {type(hidden).__name__} hidden states")
        xs.append(hidden.detach())
        kws.append({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Stop

    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for row in ids:
                with contextlib.suppress(_Stop):
                    model(input_ids=row[None], use_cache=False)
    finally:
        handle.remove()
    return xs, kws


def _run_block(block: Module, xs: list[Tensor], kws: list[dict[str, object]],
               lins: dict[str, Linear]) -> tuple[list[Tensor], dict[str, Tensor]]:
    """BLOCK on each input: its outputs, and 2 X^T X / tokens of each of LINS' inputs X (when LINS is not empty)."""
    import torch  # heavy: torch, only where a model is quantized

    hs = {n: torch.zeros(m.in_features, m.in_features) for n, m in lins.items()}
    tokens = dict.fromkeys(lins, 0)

    def hook(name: str) -> Callable[[Module, tuple[Tensor, ...], Tensor], None]:
        def add(_m: Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
            x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
            hs[name].add_(x.T @ x)
            tokens[name] += x.shape[0]
        return add

    handles = [m.register_forward_hook(hook(n)) for n, m in lins.items()]
    outs = []
    try:
        with torch.no_grad():
            for x, kw in zip(xs, kws, strict=True):
                out = block(x, **kw)
                outs.append(out[0] if isinstance(out, tuple) else out)
    finally:
        for hd in handles:
            hd.remove()
    return outs, {n: 2 * h / max(tokens[n], 1) for n, h in hs.items()}


def gptq_model(model: Module, calib: np.ndarray, group: int, symmetric: bool, act_order: bool = True,
               skip: frozenset[int] = frozenset(), head: bool = False) -> list[str]:
    """MODEL's decoder-block linears replaced, in place, by their GPTQ rounding on the token windows CALIB
    [n, seq]; the embedding and the blocks numbered in SKIP (kept 8-bit by the variant) are left to the format's
    quantizer, and so is the output projection unless HEAD (it must not share its weight with the embedding
    table: untie it first). Each block runs once on the previous (rounded) block's outputs to collect its
    Hessians and once more, rounded, to feed the next. Returns the rounded linears' names."""
    import torch  # heavy: torch, only where a model is quantized

    done: list[str] = []
    ids = torch.from_numpy(np.ascontiguousarray(calib, dtype=np.int64))
    blocks = decoder_blocks(model)
    xs, kws = _block_inputs(model, blocks[0], ids)
    for i, block in enumerate(blocks):
        lins = {n: m for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)
                and m.in_features % group == 0 and i not in skip}
        _, hs = _run_block(block, xs, kws, lins)
        with torch.no_grad():
            for name, m in lins.items():
                m.weight.copy_(gptq_weight(m.weight, hs[name], group, symmetric, act_order).to(m.weight.dtype))
                done.append(f"{i}.{name}")
        xs, _ = _run_block(block, xs, kws, {})
    if head:
        done.append(_gptq_head(model, ids, group, symmetric, act_order))
    return done


def _gptq_head(model: Module, ids: Tensor, group: int, symmetric: bool, act_order: bool) -> str:
    """The output projection rounded by GPTQ on the Hessian of its inputs (the final norm's outputs), collected by
    running the whole (already block-rounded) model on IDS. Returns its name."""
    import torch  # heavy: torch, only where a model is quantized

    lin = model.get_output_embeddings()  # type: ignore[operator]  # a transformers model, typed as a Module here
    emb = model.get_input_embeddings()  # type: ignore[operator]
    if not isinstance(lin, torch.nn.Linear) or lin.weight is emb.weight:
        raise UsageError("GPTQ on the output projection needs it untied from the embedding table",
                         "untie it first (a separate weight tensor), or round only the blocks")
    h = torch.zeros(lin.in_features, lin.in_features)
    tokens = 0

    def add(_m: Module, inp: tuple[Tensor, ...]) -> None:
        nonlocal tokens
        x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
        h.add_(x.T @ x)
        tokens += x.shape[0]

    handle = lin.register_forward_pre_hook(add)
    try:
        with torch.no_grad():
            for row in ids:
                model(input_ids=row[None], use_cache=False)
    finally:
        handle.remove()
    with torch.no_grad():
        lin.weight.copy_(gptq_weight(lin.weight, 2 * h / max(tokens, 1), group, symmetric, act_order)
                         .to(lin.weight.dtype))
    return str(next(n for n, m in model.named_modules() if m is lin))


def gptq_folder(lm: LoadedLM, calib: np.ndarray, group: int, symmetric: bool, dest: Path) -> Path:
    """A HF folder at DEST holding a copy of LM whose block linears are
    GPTQ-rounded (act order) on CALIB: the input of onnxruntime-genai's builder, whose RTN of the same group and
    symmetry then stores them. Written once per (group, symmetry): kept when DEST already has a config.json."""
    if (dest / "config.json").is_file():
        return dest
    model = copy.deepcopy(lm.model)
    gptq_model(model, calib, group, symmetric)
    return save_hf_folder(LoadedLM(model, lm.tokenizer, lm.ref, lm.kind), dest)
