"""The names edgeq gives to transformers' objects at the one boundary where they stay untyped.

transformers ships type hints, but what edgeq uses of a causal LM is resolved per architecture at run time
(``model.model.layers[i].self_attn``, ``config.head_dim`` on some families only, a GGUF tokenizer's
``bos_token_id``): typing these as ``PreTrainedModel`` / ``PretrainedConfig`` would turn every such access into a
cast. Each alias is declared once here and reused, so the boundary is visible and counted once.
"""

from __future__ import annotations

from typing import Any, TypeAlias

HFModel: TypeAlias = Any  # a transformers causal LM (PreTrainedModel subclass), float32, eval mode
HFTokenizer: TypeAlias = Any  # a transformers tokenizer (PreTrainedTokenizerBase)
HFConfig: TypeAlias = Any  # a transformers PretrainedConfig: family-specific attributes, read with getattr
