"""A local Hugging Face model directory as MODEL (``config.json`` + ``model.safetensors``), read offline.

Text models (a tokenizer in the folder) take ``input_ids`` and ``attention_mask`` (int64, ``[batch, seq_len]``;
the example is the tokenizer's encoding of real sentences padded to ``seq_len``); with a sentence-transformers
``1_Pooling`` config the output is the mean-pooled ``embedding``, else ``last_hidden_state`` (``logits`` for
``*ForSequenceClassification`` / ``*ForImageClassification`` architectures). Vision models take ``pixel_values``
``[batch, channels, image_size, image_size]`` from the config. Only safetensors weights are loaded (no pickle).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeq.errors import ModelSourceError
from edgeq.jsontypes import JSONObject, as_object

if TYPE_CHECKING:
    import torch

SEQ_LEN = 32
EXAMPLE_TEXT = ("edgeq quantizes a model for a phone.", "The ARM kernels decide whether it is accurate enough.")


def is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def _read_json(p: Path) -> JSONObject:
    try:
        return as_object(json.loads(p.read_text()), str(p), ModelSourceError)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"{p}: unreadable JSON ({e})", "is this a Hugging Face model directory?") from e


def _config_int(cfg: JSONObject, key: str, default: int) -> int:
    """A positive integer field of config.json; absent, null or 0 is ``default``."""
    value = cfg.get(key)
    if not value:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelSourceError(f"config.json: {key!r} must be an integer, got {value!r}",
                               "edgeq builds square inputs of one size from it")
    return value


def load_hf_dir(p: Path) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """(an nn.Module with named tensor inputs and one tensor output, example inputs as torch tensors)."""
    import torch  # heavy: torch, imported only when a Hugging Face folder is loaded (edgeq.source imports this)

    if not (p / "model.safetensors").is_file():
        raise ModelSourceError(f"{p}: no model.safetensors",
                               "save the model with save_pretrained(..., safe_serialization=True); pickled "
                               "pytorch_model.bin weights are not loaded")
    try:
        import transformers  # heavy: transformers, only for Hugging Face and language models
    except ImportError as e:
        raise ModelSourceError(f"{p} is a Hugging Face model directory, but transformers is not installed",
                               "pip install transformers") from e
    cfg = _read_json(p / "config.json")
    archs = cfg.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    auto = (transformers.AutoModelForSequenceClassification if arch.endswith("ForSequenceClassification")
            else transformers.AutoModelForImageClassification if arch.endswith("ForImageClassification")
            else transformers.AutoModel)
    try:
        hf = auto.from_pretrained(str(p), local_files_only=True, use_safetensors=True).eval()
    except Exception as e:  # transformers raises OSError/ValueError/KeyError for broken folders
        raise ModelSourceError(f"{p}: transformers could not load it ({type(e).__name__}: {str(e)[:200]})",
                               "check config.json and the weights belong together") from e
    is_text = (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()
    pooling = p / "1_Pooling" / "config.json"
    mean_pool = pooling.is_file() and bool(_read_json(pooling).get("pooling_mode_mean_tokens"))
    if is_text:
        tok = transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        enc = tok(list(EXAMPLE_TEXT), padding="max_length", truncation=True, max_length=SEQ_LEN,
                  return_tensors="pt")
        example = {"input_ids": enc["input_ids"].to(torch.int64).clone(),
                   "attention_mask": enc["attention_mask"].to(torch.int64).clone()}
        return _wrappers()[0](hf, mean_pool), example
    size = _config_int(cfg, "image_size", 224)
    channels = _config_int(cfg, "num_channels", 3)
    torch.manual_seed(0)
    return _wrappers()[1](hf), {"pixel_values": torch.randn(1, channels, size, size)}


def _output(out: Any) -> torch.Tensor:  # a transformers ModelOutput or tuple (transformers is untyped here)
    import torch  # heavy: torch, imported only when a Hugging Face folder is loaded

    for key in ("logits", "last_hidden_state"):
        v = getattr(out, key, None)
        if v is not None:
            break
    else:
        v = out[0]
    if not isinstance(v, torch.Tensor):
        raise ModelSourceError(f"the Hugging Face model returned a {type(v).__name__}, not a tensor")
    return v


@functools.cache
def _wrappers() -> tuple[type[torch.nn.Module], type[torch.nn.Module]]:
    """(text wrapper, vision wrapper): nn.Modules with the named inputs torch.export sees. Built on first use so
    importing edgeq.source (every command) does not import torch."""
    import torch  # heavy: torch, imported only when a Hugging Face folder is loaded

    class TextWrapper(torch.nn.Module):
        def __init__(self, hf: torch.nn.Module, mean_pool: bool) -> None:
            super().__init__()
            self.hf, self.mean_pool = hf, mean_pool

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = _output(self.hf(input_ids=input_ids, attention_mask=attention_mask))
            if not self.mean_pool:
                return out
            m = attention_mask.unsqueeze(-1).to(out.dtype)
            return (out * m).sum(1) / m.sum(1).clamp(min=1e-9)

    class VisionWrapper(torch.nn.Module):
        def __init__(self, hf: torch.nn.Module) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _output(self.hf(pixel_values=pixel_values))

    return TextWrapper, VisionWrapper
