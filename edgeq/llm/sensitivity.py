"""Which layer groups a 4-bit ``.pte`` rung keeps at 8 bits, chosen by measured sensitivity on the calibration
windows instead of a fixed list (issue #24).

A group is the output projection (``lm_head``) or one decoder block's linears (``block<i>``). Each group alone gets
its weights rounded to 4 bits as the rung's build rounds them (symmetric, per group of ``v.group`` inputs; a GPTQ
rung's linears take GPTQ's rounding from one sequential pass) while everything else stays float, and the cost is the mean per-token KL divergence of the model's next-token
distribution from the float one on the calibration windows — cheaper and less noisy than a perplexity difference,
and what 8 bits would mostly win back (the int8 per-token activations cost both widths alike, so they are left out
of the measurement). Groups are then kept at 8 bits greedily, most KL per added byte first, as long as the
artifact's predicted bytes (:func:`predicted_bytes`) stay within the rung's size cap (``Variant.keep8_cap`` x the
float bytes); a group that does not fit is passed over for smaller ones.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.llm.config import Variant
from edgeq.llm.gptq import decoder_blocks, fake_4bit, gptq_model
from edgeq.llm.hf import HFModel
from edgeq.llm.pte_export import kept_blocks
from edgeq.recipe import block_group

if TYPE_CHECKING:  # annotations only: torch is imported where a model is run
    from torch import Tensor
    from torch.nn import Linear, Module

# calibration windows the KL is measured on: 4 x 128 tokens rank SmolLM2-135M's 31 groups in ~2 min on one thread
WINDOWS = 4
_SCALE_BYTES = {4: 2, 8: 4}  # XNNPACK: bf16 scales per 4-bit group, float32 per 8-bit output channel


@dataclass(frozen=True)
class GroupCost:
    """One group's measured sensitivity: ``kl`` (nats per token) with it alone at 4 bits, and the bytes keeping it at
    8 bits adds to the artifact."""

    group: str
    kl: float
    extra_bytes: int

    def to_dict(self, kept: bool) -> JSONObject:
        return {"group": self.group, "kl": float(f"{self.kl:.4g}"), "extra_bytes": self.extra_bytes, "kept": kept}


def linear_groups(model: HFModel, group: int) -> dict[str, list[Linear]]:
    """The groups a rung may keep at 8 bits: ``lm_head`` and ``block<i>``, each with the linears the 4-bit body
    would quantize (input width a multiple of GROUP)."""
    import torch  # heavy: torch, only where a model is run

    head = model.get_output_embeddings()
    out: dict[str, list[Linear]] = {"lm_head": [head]} if isinstance(head, torch.nn.Linear) else {}
    for i, block in enumerate(decoder_blocks(model)):
        out[block_group(i)] = [m for m in block.modules()
                               if isinstance(m, torch.nn.Linear) and m.in_features % group == 0]
    return out


def _linear_bytes(m: Linear, bits: int, group: int) -> int:
    """The stored bytes of M's weight at BITS: 4-bit per GROUP inputs, 8-bit per output channel."""
    scales = m.out_features * (m.in_features // (group or m.in_features) if bits == 4 else 1)
    return m.out_features * m.in_features * bits // 8 + scales * _SCALE_BYTES[bits]


def predicted_bytes(model: HFModel, v: Variant) -> int:
    """The ``.pte`` bytes V's build of MODEL stores: its linears at their widths, the (untied) embedding table at
    ``v.embedding_bits`` and every other float tensor at 4 bytes. The program adds a little beside them:
    SmolLM2-135M's lowered 4-bit rungs were ~0.5 MB (0.1 % of float) over it (docs/explanation/benchmarks/llm.md)."""
    import torch  # heavy: torch, only where a model is run

    kept = kept_blocks(v, len(decoder_blocks(model)))
    head = model.get_output_embeddings()
    wide = {id(m) for i in kept for m in linear_groups(model, v.group or 32).get(block_group(i), [])}
    total, counted = 0, set()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and (v.group == 0 or m.in_features % v.group == 0):
            bits = 8 if id(m) in wide or (m is head and "lm_head" in v.keep8) else v.bits
            total += _linear_bytes(m, bits, v.group)
        elif isinstance(m, torch.nn.Embedding) and v.embedding_bits:
            rows, cols = m.weight.shape
            per_row = cols // (v.group or 32) if v.embedding_bits == 4 else 1
            total += rows * cols * v.embedding_bits // 8 + rows * per_row * 4  # float32 scales (ExecuTorch)
        else:
            continue
        counted.add(id(m.weight))
    rest = {id(p): p for p in model.parameters() if id(p) not in counted}
    return total + sum(int(p.numel()) * 4 for p in rest.values())


@contextlib.contextmanager
def _swapped(lins: list[Linear], weights: list[Tensor]) -> Iterator[None]:
    """LINS with WEIGHTS in place of their own, restored afterwards."""
    import torch  # heavy: torch, only where a model is run

    saved = [m.weight.detach().clone() for m in lins]
    try:
        with torch.no_grad():
            for m, w in zip(lins, weights, strict=True):
                m.weight.copy_(w)
        yield
    finally:
        with torch.no_grad():
            for m, w in zip(lins, saved, strict=True):
                m.weight.copy_(w)


def _log_probs(model: Module, ids: Tensor) -> list[Tensor]:
    import torch  # heavy: torch, only where a model is run

    with torch.no_grad():
        return [torch.log_softmax(model(input_ids=row[None], use_cache=False).logits[0].float(), -1) for row in ids]


def _four_bit_weights(m: HFModel, calib: np.ndarray, group: int, gptq: bool) -> dict[str, Tensor]:
    """Each quantized linear's 4-bit weight (as float) by module name, as the build rounds it: GPTQ's (one
    sequential pass on a copy, the output projection last, as edgeq.llm.pte_export runs it) when GPTQ, torchao's
    grid otherwise. M's output projection is untied from its embedding table."""
    groups = linear_groups(m, group)
    lins = {n: mod for n, mod in m.named_modules() if any(mod is x for xs in groups.values() for x in xs)}
    if not gptq:
        return {n: fake_4bit(mod.weight.detach(), group) for n, mod in lins.items()}
    # GPTQ rounds every one of LINS: the blocks' linears of GROUP-multiple width, and the head when it is a group
    r = copy.deepcopy(m)
    gptq_model(r, calib, group, symmetric=True, head="lm_head" in groups)
    rounded = dict(r.named_modules())
    return {n: rounded[n].weight.detach().clone() for n in lins}


def measure_groups(model: HFModel, calib: np.ndarray, group: int, gptq: bool = False,
                   windows: int = WINDOWS) -> list[GroupCost]:
    """Each group's KL (nats per token) from the float model's next-token distribution on the first WINDOWS of
    CALIB [n, seq] with that group alone rounded to 4 bits (GPTQ's rounding on all of CALIB when GPTQ), and the bytes
    keeping it at 8 bits adds."""
    import torch  # heavy: torch, only where a model is run

    m = copy.deepcopy(model)
    if m.config.tie_word_embeddings:  # the head is rounded alone, not the embedding table it shares
        head = m.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    four = _four_bit_weights(m, calib, group, gptq)
    names = {id(mod): n for n, mod in m.named_modules()}
    ids = torch.from_numpy(np.ascontiguousarray(calib[:windows], dtype=np.int64))
    ref = _log_probs(m, ids)
    costs = []
    for name, lins in linear_groups(m, group).items():
        with _swapped(lins, [four[names[id(lin)]] for lin in lins]):
            got = _log_probs(m, ids)
        kl = sum(float((r.exp() * (r - g)).sum(-1).mean()) for r, g in zip(ref, got, strict=True)) / len(ref)
        extra = sum(_linear_bytes(lin, 8, group) - _linear_bytes(lin, 4, group) for lin in lins)
        costs.append(GroupCost(name, kl, extra))
    return costs


def choose(costs: list[GroupCost], base_bytes: int, cap_bytes: int) -> tuple[str, ...]:
    """The groups kept at 8 bits: most KL per added byte first, each while BASE_BYTES plus the kept groups' extra
    bytes stay within CAP_BYTES (a group that does not fit is passed over for smaller ones)."""
    kept: list[str] = []
    total = base_bytes
    for c in sorted(costs, key=lambda c: c.kl / max(c.extra_bytes, 1), reverse=True):
        if total + c.extra_bytes <= cap_bytes:
            kept.append(c.group)
            total += c.extra_bytes
    return tuple(kept)


def resolve(model: HFModel, calib: np.ndarray, v: Variant, float_bytes: int) -> tuple[Variant, JSONObject]:
    """V with its measured 8-bit groups (``keep8_cap`` > 0) added to ``keep8``, and the manifest's record of the
    measurement: every group's KL and added bytes, which were kept, the cap and the predicted bytes. A variant
    without ``keep8_cap`` comes back as it is, with an empty record."""
    if not v.keep8_cap:
        return v, {}
    if v.bits != 4:
        raise UsageError(f"{v.name}: measured 8-bit groups need a 4-bit body", "set bits=4, or keep8_cap=0")
    base = replace(v, keep8_cap=0.0)
    costs = measure_groups(model, calib, v.group or 32, gptq=v.algo == "gptq")
    cap = int(v.keep8_cap * float_bytes)
    chosen = set(choose(costs, predicted_bytes(model, base), cap))
    # the output projection first, then the blocks in order: one spelling per set (the variant's name)
    order = [c.group for c in costs if c.group in chosen and c.group not in v.keep8]
    resolved = replace(base, keep8=(*v.keep8, *order))
    record: JSONObject = {"windows": min(WINDOWS, len(calib)), "size_cap": v.keep8_cap,
                          "predicted_bytes": predicted_bytes(model, resolved),
                          "groups": [c.to_dict(c.group in chosen) for c in costs]}
    return resolved, record
