"""SmoothQuant for decoder LMs (Xiao et al. 2023), folded into the weights so the graph is unchanged.

8da8w quantizes every Linear input per token to int8. In small LMs a few channels of the RMSNorm outputs and of
the SwiGLU product (the down-projection input, "massive activations") are 10-100x larger than the rest, so one
scale per token crushes the others. A positive per-channel ``s`` moves that range into the weights exactly:

- RMSNorm -> q/k/v and RMSNorm -> gate/up: ``norm.weight / s`` and the readers' input columns ``* s``;
- the final RMSNorm -> the output projection (untied from the embedding table first);
- up -> down across the SwiGLU product ``silu(gate x) * (up x)``: up's output rows ``/ s``, down's input
  columns ``* s`` (the product is linear in ``up x``, so this is exact too).

``s`` (and the strength ``alpha``) are chosen per input tensor by edgeq.outliers.smoothquant on calibration
rows, for per-token activations; ``alpha = 0`` (leave it alone) is always a candidate. Nothing is added to the
graph (no ``x * 1/s`` op), so the lowered program has the same ops as without smoothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import QuantizationError
from edgeq.jsontypes import JSONObject
from edgeq.llm.gptq import fake_4bit
from edgeq.llm.hf import HFModel
from edgeq.outliers.smoothquant import SmoothQuantConfig, choose_scale, int8_per_channel
from edgeq.outliers.stats import InputStats, linear_input_stats

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.smoothquant import WeightRoundTrip

# RMSNorms whose forward is ``weight * normalized(x)`` (Gemma's ``(1 + weight)`` is not one of them)
_PLAIN_RMSNORMS = ("LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm", "Phi3RMSNorm",
                   "OlmoRMSNorm", "GraniteRMSNorm", "SmolLM3RMSNorm")
_LAYER = re.compile(r"^(?P<block>.*\.layers\.\d+)\.(?P<rest>.+)$")
PER_TOKEN = SmoothQuantConfig(activation="per_token", calibration_samples=16)


def _plain_norm(block: torch.nn.Module | None, name: str) -> torch.nn.Module | None:
    norm = getattr(block, name, None)
    return norm if norm is not None and type(norm).__name__ in _PLAIN_RMSNORMS else None


def _logits(model: HFModel, window: np.ndarray) -> torch.Tensor:
    import torch  # heavy: torch, imported only where a model is built or run

    with torch.no_grad():
        logits: torch.Tensor = model(torch.from_numpy(np.ascontiguousarray(window[None]))).logits
        return logits.float()


def _apply(st: InputStats, linears: list[torch.nn.Module], producer: torch.nn.Module, kind: str, cfg: SmoothQuantConfig,
           fake_weight: WeightRoundTrip, log: list[JSONObject]) -> None:
    """Choose the scale for the input ST of LINEARS and fold it: their input columns * s, PRODUCER / s (a norm's
    weight, or the up-projection's output rows), the error simulated with the weights' FAKE_WEIGHT round trip."""
    weights = [m.get_parameter("weight").detach().float() for m in linears]
    alpha, scale, err, base = choose_scale(st, weights, cfg, fake_weight)
    applied = alpha > 0 and err < base * (1 - cfg.min_gain)
    log.append({"layers": st.layers, "alpha": alpha if applied else 0.0,
                "error_before": round(base, 6), "error_after": round(err if applied else base, 6)})
    if not applied:
        return
    s = scale.to(weights[0].dtype)
    for m in linears:
        m.get_parameter("weight").mul_(s[None, :])
    if kind == "norm":
        producer.get_parameter("weight").div_(s)
    else:
        producer.get_parameter("weight").div_(s[:, None])
        bias = getattr(producer, "bias", None)  # the up-projection Linear's (None when it has none)
        if bias is not None:
            bias.div_(s)


def _round_trip(group: int) -> WeightRoundTrip:
    """int8 per output channel (GROUP 0), else XNNPACK's symmetric int4 per GROUP input columns."""
    if not group:
        return int8_per_channel
    return lambda w: fake_4bit(w, group) if w.shape[1] % group == 0 else int8_per_channel(w)


def smooth_decoder(model: HFModel, windows: np.ndarray, cfg: SmoothQuantConfig = PER_TOKEN,
                   weight_group: int = 0) -> list[JSONObject]:
    """Migrate per-token activation outliers of MODEL (a HF causal LM, float) into its weights, in place, from
    the calibration token WINDOWS [n, T]; the strengths are chosen for int8 weights, or for 4-bit ones in groups
    of WEIGHT_GROUP. Returns one log entry per Linear input considered. Float logits stay the same (checked on one
    window: a relative change above 1e-4 raises QuantizationError)."""
    import torch  # heavy: torch, imported only where a model is built or run

    before = _logits(model, windows[0])
    fake_weight = _round_trip(weight_group)
    stats = linear_input_stats(model, {"input_ids": windows}, cfg.calibration_samples)
    log: list[JSONObject] = []
    with torch.no_grad():
        for st in stats:
            head = model.get_output_embeddings()
            if len(st.layers) == 1 and model.get_submodule(st.layers[0]) is head:
                norm = _plain_norm(getattr(model, "model", None), "norm")
                if norm is None:
                    continue
                if head.weight is model.get_input_embeddings().weight:
                    # tied: scaling the head's columns must not scale the embedding table too
                    head.weight = torch.nn.Parameter(head.weight.detach().clone())
                _apply(st, [head], norm, "norm", cfg, fake_weight, log)
                continue
            where = [_LAYER.match(n) for n in st.layers]
            if not all(where):
                continue
            blocks = {w.group("block") for w in where if w}
            rests = tuple(w.group("rest") for w in where if w)
            if len(blocks) != 1:
                continue
            block = model.get_submodule(blocks.pop())
            if set(rests) <= {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}:
                producer, kind = _plain_norm(block, "input_layernorm"), "norm"
            elif set(rests) <= {"mlp.gate_proj", "mlp.up_proj"}:
                producer, kind = _plain_norm(block, "post_attention_layernorm"), "norm"
            elif rests == ("mlp.down_proj",) and hasattr(block.mlp, "up_proj"):
                producer, kind = block.mlp.up_proj, "up"
            else:
                continue
            if producer is None:
                continue
            _apply(st, [model.get_submodule(n) for n in st.layers], producer, kind, cfg, fake_weight, log)
    after = _logits(model, windows[0])
    rel = float((after - before).abs().max() / before.abs().max().clamp(min=1e-12))
    if rel > 1e-4:
        raise QuantizationError(f"SmoothQuant changed this model's float logits (max rel. diff {rel:.2e})",
                                "its norms or MLP do not have the Llama form; use a variant without smoothing")
    return log
