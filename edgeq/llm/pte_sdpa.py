"""ExecuTorch's fast LLM decode path for a transformers causal LM: the KV cache and attention as ExecuTorch's
custom ops (``executorch.extension.llm.custom_ops``), the rest of the model untouched.

- KV cache: one ExecuTorch ``CustomKVCache`` per layer (``examples/models/llama/source_transformation/
  custom_kv_cache.py``, shipped in the wheel): [1, max_context, kv_heads, head_dim] program buffers written in
  place by ``llama::update_cache`` at ``input_pos`` (no ``index_put`` copy of the whole cache per step);
- attention: ``llama::custom_sdpa`` over the cache, causal from ``start_pos``: a decode step reads the
  ``input_pos + T`` cached positions, not all ``max_context`` of them behind a mask; grouped-query heads are
  handled inside the op (no ``repeat_kv`` copy). Windowed layers (Gemma 2/3 local attention) whose window is
  shorter than the cache get an explicit [T, max_context] sliding mask instead of the causal flag.

This is the program optimum-executorch builds (``custom_sdpa`` attention registered in transformers'
``AttentionInterface``, a static cache whose layers are ``CustomKVCache``), here for transformers 5's cache API
(``Cache.update(k, v, layer_idx)`` without positions, so the wrapper hands ``input_pos`` to the cache) and in
ExecuTorch's LLM-runner convention ``forward(tokens [1, T], input_pos [1]) -> logits [1, T, vocab]``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.errors import CaptureError
from edgeq.llm.hf import HFConfig, HFModel

if TYPE_CHECKING:
    import torch
    from executorch.examples.models.llama.source_transformation.custom_kv_cache import CustomKVCache

ATTENTION = "edgeq_executorch_custom_sdpa"  # the name registered in transformers' attention/mask interfaces


def unsupported(config: HFConfig) -> str | None:
    """Why the custom-SDPA program cannot express this model's attention, or None when it can."""
    if getattr(config, "attn_logit_softcapping", None):
        return "attention logit soft-capping (llama::custom_sdpa has no soft-cap)"
    if getattr(config, "num_kv_shared_layers", 0):
        return "KV sharing across layers"
    return None


def _attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None = None,
               scaling: float | None = None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers attention interface over ExecuTorch's custom SDPA. QUERY [B, Hq, T, D]; KEY / VALUE: the
    whole cache as [B, Hkv, S, D] views of the [B, S, Hkv, D] buffers (the transposes cancel in the graph).
    transformers passes everything after the tensors by keyword, so the rarely set ``softcap`` is read from
    KWARGS (with ``dropout``, ``sliding_window``, ... which the custom op ignores)."""
    import torch  # heavy: torch, imported only where a model is built or run

    if kwargs.get("softcap"):
        raise CaptureError("attention soft-capping reached llama::custom_sdpa", "build the static-cache program")
    if position_ids is None:
        raise CaptureError("llama::custom_sdpa needs position_ids (the cache's start position)",
                           "call the exported wrapper, which passes them")
    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    start = position_ids[0][0].item()
    window = getattr(module, "sliding_window", None) if getattr(module, "is_sliding", False) else None
    if window is not None and window < k.shape[1]:
        t = q.shape[1]
        pos = start + torch.arange(t, dtype=torch.long).unsqueeze(1)
        keys = torch.arange(k.shape[1], dtype=torch.long).unsqueeze(0)
        ok = (keys <= pos) & (keys > pos - window)
        mask = torch.zeros(ok.shape, dtype=torch.float32).masked_fill(~ok, float("-inf"))
        out = torch.ops.llama.custom_sdpa(q, k, v, 0, mask, 0.0, False, scaling)
    else:
        out = torch.ops.llama.custom_sdpa(q, k, v, start, None, 0.0, True, scaling)
    return out.to(dtype), None


def _no_mask(*args: object, **kwargs: object) -> None:
    """The mask interface: the custom op masks causally itself (sliding layers build theirs in ``_attention``)."""
    return None


def register() -> None:
    """Load the custom ops into torch and register the attention (idempotent)."""
    # optional: the [executorch] extra
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (registers torch.ops.llama.*)
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, _no_mask)


def _kv_shape(config: HFConfig) -> tuple[int, int]:
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    return heads, head_dim


def wrapper(model: HFModel, max_context: int) -> torch.nn.Module:
    """MODEL (a transformers causal LM, changed in place: its attention implementation) as the module to export:
    ``forward(tokens [1, T], input_pos [1]) -> logits``, one CustomKVCache buffer pair per layer."""
    # optional: the [executorch] extra
    import torch
    from executorch.examples.models.llama.source_transformation.custom_kv_cache import CustomKVCache
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

    register()
    config = model.config.get_text_config()
    why = unsupported(config)
    if why is not None:
        raise CaptureError(f"ExecuTorch's custom-SDPA program cannot express {type(model).__name__}: {why}",
                           "the static-cache program (pte_program='static-cache') builds it")
    heads, head_dim = _kv_shape(config)

    class _Cache(StaticCache):
        """transformers' cache API over ExecuTorch's CustomKVCache: update() writes at ``input_pos``."""

        def __init__(self, layers: torch.nn.ModuleList) -> None:
            super().__init__(config=config, max_cache_len=max_context)
            # as transformers' own export wrapper: window layers' mask sizes depend on the token count (an export
            # guard T <= window); the window is applied in _attention instead
            self.layers = [StaticLayer(max_context) if isinstance(la, StaticSlidingWindowLayer) else la
                           for la in self.layers]
            self.kv = layers
            self.input_pos: torch.Tensor | None = None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object,
                   **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
            layer: CustomKVCache = self.kv[layer_idx]
            return layer.update(self.input_pos, key_states, value_states)  # type: ignore[no-any-return]

    class EtLlm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.kv = torch.nn.ModuleList(CustomKVCache(1, max_context, heads, head_dim, torch.float32)
                                          for _ in range(int(config.num_hidden_layers)))
            self.cache = _Cache(self.kv)

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            self.cache.input_pos = input_pos
            pos = (input_pos + torch.arange(tokens.shape[1], dtype=torch.long)).unsqueeze(0)
            out = self.model(input_ids=tokens, position_ids=pos, past_key_values=self.cache, use_cache=True)
            return out.logits  # type: ignore[no-any-return]

    model.config._attn_implementation = ATTENTION
    text = model.get_decoder() if hasattr(model, "get_decoder") else model
    text.config._attn_implementation = ATTENTION
    return EtLlm().eval()
