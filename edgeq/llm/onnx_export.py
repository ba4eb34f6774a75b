"""The .onnx LM: onnxruntime-genai's model builder writes the KV-cache graph (GroupQueryAttention, rotary inside),
quantizes MatMul/Gather weights with onnxruntime's MatMulNBitsQuantizer and writes genai_config.json + tokenizer.

Why the builder and not torch.onnx: it emits the graph from the weights directly (seconds on a 135M model) while the
dynamo exporter traced for ~15 min, and its layout is the one onnxruntime-genai apps open."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

from edgeq.errors import CaptureError, UsageError
from edgeq.llm.config import Variant


def builder_options(v: Variant) -> tuple[str, dict[str, str]]:
    """(precision, extra_options) for onnxruntime_genai.models.builder.create_model."""
    if v.bits == 32:
        return "fp32", {}
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
    if v.accuracy_level not in (0, 1, 2, 3, 4):
        raise UsageError(f"MatMulNBits accuracy_level must be 0-4 (got {v.accuracy_level})",
                         "4 = int8 activation math, 1 = float32")
    if v.group not in (16, 32, 64, 128, 256):
        raise UsageError(f"MatMulNBits block size must be 16, 32, 64, 128 or 256 (got {v.group})")
    opts = {
        "block_size": str(v.group),
        "is_symmetric": "true" if v.symmetric else "false",
        # 4 = int8 activations in the MatMulNBits kernel: the fast path on ARM (sdot/i8mm) and x86 (VNNI);
        # 1 = float32 activations (weight-only math: more accurate, slower decode)
        "accuracy_level": str(v.accuracy_level),
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


def build_onnx(hf_folder: Path, out: Path, v: Variant, cache_dir: Path) -> Path:
    """Write OUT/model.onnx (+ .data), genai_config.json and tokenizer files for variant V."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

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
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            kv = parse_extra_options("", str(hf_folder), str(out), precision, "cpu", str(cache_dir),
                                     [f"{k}={val}" for k, val in opts.items()])
            create_model("", str(hf_folder), str(out), precision, "cpu", str(cache_dir), **kv)
    except Exception as e:  # the builder raises NotImplementedError/ValueError/KeyError for unsupported models
        raise CaptureError(f"onnxruntime-genai's builder failed on {hf_folder} ({v.name}): {e}",
                           "supported: the Llama, Qwen2/3, Phi, Mistral, Gemma families") from e
    finally:
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
    if not (out / "model.onnx").is_file():
        raise CaptureError(f"the builder wrote no model.onnx for {v.name}", log.getvalue()[-500:])
    return out


def folder_bytes(folder: Path) -> int:
    """Weights + graph bytes (model.onnx and its external data), not the tokenizer."""
    return sum(p.stat().st_size for p in Path(folder).glob("model.onnx*"))
