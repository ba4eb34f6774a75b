"""Load a causal LM and its tokenizer: a Hugging Face folder, a ``.gguf`` file, or ``module:factory``."""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from edgeq.errors import ModelSourceError
from edgeq.llm.hf import HFModel, HFTokenizer


@dataclass
class LoadedLM:
    model: HFModel  # float32, eval mode
    tokenizer: HFTokenizer
    ref: str
    kind: str  # hf-folder | gguf | factory


def is_causal_lm_folder(ref: str) -> bool:
    """True when REF is a folder whose config.json names a causal-LM architecture (the auto-detection)."""
    cfg = Path(ref) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    # transformers names causal LMs ...ForCausalLM, except the older GPT-2-style heads (GPT2LMHeadModel)
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def looks_like_lm(ref: str) -> bool:
    return ref.endswith(".gguf") or is_causal_lm_folder(ref)


def load_lm(ref: str) -> LoadedLM:
    try:
        # heavy: transformers, only for Hugging Face and language models
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ModelSourceError("transformers is not installed", "pip install 'transformers==5.23.0' gguf") from e
    p = Path(ref)
    if ref.endswith(".gguf"):
        if not p.is_file():
            raise ModelSourceError(f"GGUF file not found: {ref}")
        try:
            tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
            model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype="float32")
        except Exception as e:  # transformers raises ValueError/KeyError/OSError for unsupported files
            raise ModelSourceError(f"cannot read {ref} as a causal LM: {e}",
                                   "transformers reads GGUF files of Llama, Qwen2, Phi-3, GPT-2 ... with the "
                                   "`gguf` package installed") from e
        _drop_gguf_quantizer(model)
        return _ready(LoadedLM(model, tok, ref, "gguf"))
    if p.is_dir():
        if not is_causal_lm_folder(ref):
            raise ModelSourceError(f"{ref} has no config.json naming a ...ForCausalLM architecture",
                                   "save the model with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)")
        try:
            tok = AutoTokenizer.from_pretrained(ref)
            model = AutoModelForCausalLM.from_pretrained(ref, dtype="float32")
        except Exception as e:
            raise ModelSourceError(f"cannot load the Hugging Face folder {ref}: {e}") from e
        return _ready(LoadedLM(model, tok, ref, "hf-folder"))
    if ":" in ref:
        return _ready(_from_factory(ref))
    raise ModelSourceError(f"cannot resolve the language model {ref!r}",
                           "give a Hugging Face model folder, a .gguf file, or pkg.module:factory returning "
                           "(model, tokenizer)")


def _from_factory(ref: str) -> LoadedLM:
    mod_name, _, fn_name = ref.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            if spec is None or spec.loader is None:
                raise ModelSourceError(f"cannot import {mod_name}")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
        out = getattr(mod, fn_name)()
    except (ImportError, AttributeError, OSError) as e:
        raise ModelSourceError(f"cannot call the factory {ref}: {e}") from e
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ModelSourceError(f"the factory {ref} returned {type(out).__name__}, expected (model, tokenizer)")
    return LoadedLM(out[0], out[1], ref, "factory")


def _drop_gguf_quantizer(model: HFModel) -> None:
    # transformers dequantizes GGUF blocks to float on load but keeps a quantizer that forbids save_pretrained;
    # the float weights are what we export, so the marker goes.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # transformers >= 5 also flags the model (and each submodule's config) quantized, which forbids .float();
    # clear them as its own remove_quantization_config does
    model.is_quantized = False
    for module in model.modules():
        if getattr(getattr(module, "config", None), "_is_quantized", False):
            module.config._is_quantized = False
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]


def _ready(lm: LoadedLM) -> LoadedLM:
    if not hasattr(lm.model, "config") or not hasattr(lm.model, "generation_config"):
        raise ModelSourceError(f"{lm.ref} did not give a transformers causal LM (got {type(lm.model).__name__})")
    lm.model = lm.model.float().eval()
    return lm


def save_hf_folder(lm: LoadedLM, folder: Path) -> Path:
    """Write the float model + tokenizer as a HF folder: the input of onnxruntime-genai's model builder."""
    folder.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(folder))
    lm.tokenizer.save_pretrained(str(folder))
    return folder


def float_bytes(model: HFModel) -> int:
    """Bytes of the float weights, each shared (tied) tensor counted once."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen or not t.is_floating_point():
            continue
        seen.add(t.data_ptr())
        total += t.numel() * 4
    return total
