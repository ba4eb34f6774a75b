"""The .onnx LM: onnxruntime-genai's model builder writes the KV-cache graph (GroupQueryAttention, rotary inside),
quantizes MatMul/Gather weights with onnxruntime's MatMulNBitsQuantizer and writes genai_config.json + tokenizer.

Why the builder and not torch.onnx: it emits the graph from the weights directly (seconds on a 135M model) while the
dynamo exporter traced for ~15 min, and its layout is the one onnxruntime-genai apps open.

``position_ids`` is a graph input (the Optimum / onnxruntime-genai convention the issue asks for): on CPU the
builder fuses rotary embeddings into GroupQueryAttention and then drops the input (positions follow the mask).
It has no option to keep it, so the build runs with the builder's own unfused-RoPE path — the one it uses for
DirectML and Gemma-4 (``Model.is_fused_rope_supported`` -> False, separate Q/K/V MatMuls, a RotaryEmbedding op
fed by ``position_ids``). onnxruntime-genai lists the input in genai_config.json and feeds it; measured on the
tiny test Llama the logits equal the fused build's and transformers' to 3e-7."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeq.errors import CaptureError, ModelSourceError, UsageError
from edgeq.llm.config import Variant


def builder_options(v: Variant) -> tuple[str, dict[str, str]]:
    """(precision, extra_options) for onnxruntime_genai.models.builder.create_model."""
    if v.bits == 32:
        return "fp32", {"fuse_qkv": "false"}
    if v.bits not in (4, 8):
        raise UsageError(f"ONNX weights must be 4 or 8 bits (got {v.bits})")
    if v.activations != "weight-only":
        raise UsageError("ONNX LM variants are weight-only (MatMulNBits); accuracy_level sets the kernel's "
                         "int8 activation math instead")
    if v.bits == 8 and v.embedding_bits:
        # measured: with precision int8 the builder leaves the embedding Gather float, so do not claim otherwise
        raise UsageError("the ONNX builder quantizes the embedding table only in 4-bit builds",
                         "use embedding_bits=0 for 8-bit ONNX variants")
    if v.embedding_bits not in (0, v.bits):
        raise UsageError(f"the ONNX embedding table is quantized with the body's width ({v.bits} bits) or kept float",
                         f"use embedding_bits={v.bits} or 0")
    if v.group not in (16, 32, 64, 128, 256):
        raise UsageError(f"MatMulNBits block size must be 16, 32, 64, 128 or 256 (got {v.group})")
    opts = {
        # separate Q/K/V projections: the unfused-RoPE path (position_ids input) rotates Q and K separately
        "fuse_qkv": "false",
        "block_size": str(v.group),
        "is_symmetric": "true" if v.symmetric else "false",
        # 4 = int8 activations in the MatMulNBits kernel: the fast path on ARM (sdot/i8mm) and x86 (VNNI).
        "accuracy_level": "4",
        "op_types_to_quantize": "MatMul/Gather" if v.embedding_bits else "MatMul",
    }
    if v.algo != "default":
        opts["algo_config"] = v.algo
    mixed = []
    if "lm_head" in v.keep8:
        mixed.append("last_matmul:int8")
    if "mixed" in v.keep8:
        mixed.append("mixed_layers:int8")
    if mixed and v.bits == 4:
        opts["matmul_mixed_precision"] = ",".join(mixed)
        opts.setdefault("algo_config", "rtn")
    return f"int{v.bits}", opts


# Causal-LM architectures (config.json "architectures") the builder writes; others raise before anything is built.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                           "PhiForCausalLM", "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
                           "GraniteForCausalLM", "OlmoForCausalLM", "SmolLM3ForCausalLM")


def check_architecture(arch: str) -> str:
    """ARCH (config.json's first architecture), or a typed error naming it and the ones the builder supports."""
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelSourceError(
            f"the ONNX LM export does not support {arch} (onnxruntime-genai's model builder has no {arch} writer)",
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}; export this model with --format pte")
    return arch


@contextlib.contextmanager
def _position_ids_input(builder: Any) -> Iterator[None]:
    """Make the builder keep ``position_ids`` (see the module docstring); restored afterwards."""
    cls: Any = getattr(builder, "Model", None)
    old = getattr(cls, "__dict__", {}).get("is_fused_rope_supported")
    if old is None:
        raise CaptureError("this onnxruntime-genai builder has no Model.is_fused_rope_supported hook, so edgeq "
                           "cannot keep the position_ids input", "pin onnxruntime-genai==0.18.0 (tested)")
    cls.is_fused_rope_supported = lambda self: False
    try:
        yield
    finally:
        cls.is_fused_rope_supported = old


def build_onnx(hf_folder: Path, out: Path, v: Variant, cache_dir: Path) -> Path:
    """Write OUT/model.onnx (+ .data), genai_config.json and tokenizer files for variant V."""
    import json

    import onnxruntime_genai.models.builder as builder

    check_architecture(str((json.loads((hf_folder / "config.json").read_text()).get("architectures") or ["?"])[0]))
    precision, opts = builder_options(v)
    out.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    # the builder logs every quantized MatMul at INFO and draws its own bars: keep our terminal readable
    for name in ("onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # never reach a model hub from the builder
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), _position_ids_input(builder):
            kv = builder.parse_extra_options("", str(hf_folder), str(out), precision, "cpu", str(cache_dir),
                                             [f"{k}={val}" for k, val in opts.items()])
            builder.create_model("", str(hf_folder), str(out), precision, "cpu", str(cache_dir), **kv)
    except CaptureError:
        raise
    except Exception as e:  # the builder raises NotImplementedError/ValueError/KeyError for unsupported models
        raise CaptureError(f"onnxruntime-genai's builder failed on {hf_folder} ({v.name}): {e}",
                           f"supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}") from e
    finally:
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
    if not (out / "model.onnx").is_file():
        raise CaptureError(f"the builder wrote no model.onnx for {v.name}", log.getvalue()[-500:])
    _check_io(out / "model.onnx")
    return out


def _check_io(path: Path) -> None:
    """The convention apps rely on: a builder upgrade that drops an input must fail here, not on the device."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    names = {i.name for i in g.input}
    missing = {"input_ids", "attention_mask", "position_ids", "past_key_values.0.key"} - names
    if missing or "logits" not in {o.name for o in g.output}:
        raise CaptureError(f"the builder's graph lacks {sorted(missing) or ['logits']}",
                           "pin onnxruntime-genai to a version whose builder keeps the separate-RoPE path")


def folder_bytes(folder: Path) -> int:
    """Weights + graph bytes (model.onnx and its external data), not the tokenizer."""
    return sum(p.stat().st_size for p in Path(folder).glob("model.onnx*"))
