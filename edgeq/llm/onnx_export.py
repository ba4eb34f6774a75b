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

import ast
import contextlib
import functools
import importlib
import inspect
import io
import json
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import onnx

from edgeq.errors import CaptureError, ModelSourceError, UsageError
from edgeq.llm.config import Variant
from edgeq.llm.hf import HFConfig
from edgeq.llm.onnx_weights import EMBEDDING_BLOCK, quantize_embedding, quantize_hqq


def builder_options(v: Variant) -> tuple[str, dict[str, str]]:
    """(precision, extra_options) for onnxruntime_genai.models.builder.create_model."""
    if v.bits == 32:
        return "fp32", {"fuse_qkv": "false"}
    if v.algo == "hqq":
        # the builder has no HQQ (its algo_config is default | rtn | k_quant): it writes the float graph and
        # quantize_hqq() quantizes its MatMuls afterwards with onnxruntime's HQQ quantizer
        if v.bits != 4 or "mixed" in v.keep8:
            raise UsageError(f"HQQ builds are 4-bit with at most lm_head kept 8-bit (got {v.name})",
                             "use algo='k_quant' for the builder's mixed layers")
        return "fp32", {"fuse_qkv": "false"}
    if v.bits not in (4, 8):
        raise UsageError(f"ONNX weights must be 4 or 8 bits (got {v.bits})")
    if v.activations != "weight-only":
        raise UsageError("ONNX LM variants are weight-only (MatMulNBits); accuracy_level sets the kernel's "
                         "int8 activation math instead")
    if v.embedding_bits not in (0, 4):
        # onnxruntime's GatherBlockQuantized (and MatMulNBitsQuantizer's Gather path) is 4-bit only
        raise UsageError(f"the ONNX embedding table is quantized to 4 bits or kept float (got {v.embedding_bits})",
                         "use embedding_bits=4 or 0")
    if v.accuracy_level not in (0, 1, 2, 3, 4):
        raise UsageError(f"MatMulNBits accuracy_level must be 0-4 (got {v.accuracy_level})",
                         "4 = int8 activation math, 1 = float32")
    if v.group not in (16, 32, 64, 128, 256):
        raise UsageError(f"MatMulNBits block size must be 16, 32, 64, 128 or 256 (got {v.group})")
    opts = {
        # separate Q/K/V projections: the unfused-RoPE path (position_ids input) rotates Q and K separately
        "fuse_qkv": "false",
        "block_size": str(v.group),
        "is_symmetric": "true" if v.symmetric else "false",
        # 4 = int8 activations in the MatMulNBits kernel: the fast path on ARM (sdot/i8mm) and x86 (VNNI);
        # 1 = float32 activations (weight-only math: more accurate, slower decode)
        "accuracy_level": str(v.accuracy_level),
        # an int8 build leaves the Gather float whatever this says: quantize_embedding() does it afterwards
        "op_types_to_quantize": "MatMul/Gather" if v.embedding_bits and v.bits == 4 else "MatMul",
    }
    if v.algo == "gptq":
        # the weights arrive GPTQ-rounded (edgeq.llm.gptq) on the grid of onnxruntime's asymmetric RTN, which stores
        # them; its symmetric grid (max|w| / 7.5) cannot be re-picked from rounded weights
        if v.symmetric or v.bits != 4:
            raise UsageError(f"{v.name}: ONNX GPTQ variants are asymmetric 4-bit", "use symmetric=False")
        opts["algo_config"] = "rtn"
    elif v.algo != "default":
        opts["algo_config"] = v.algo
    elif not v.symmetric:
        # the builder's tied table (GatherBlockQuantized on lm_head's packed weights) misses the asymmetric default
        # quantizer's initializer names and does not load (onnxruntime-genai 0.18); its RTN names it right
        opts["algo_config"] = "rtn"
    mixed = []
    if "lm_head" in v.keep8:
        mixed.append("last_matmul:int8")
    if "mixed" in v.keep8:
        mixed.append("mixed_layers:int8")
    if mixed and v.bits == 4:
        opts["matmul_mixed_precision"] = ",".join(mixed)
        opts.setdefault("algo_config", "rtn")
    return f"int{v.bits}", opts


def _builder() -> ModuleType:
    try:
        # heavy: onnxruntime-genai, only to build a language model's ONNX folder
        builder = importlib.import_module("onnxruntime_genai.models.builder")
    except ImportError as e:  # optional dependency of the ONNX LM path
        raise ModelSourceError(f"onnxruntime-genai's model builder cannot be imported: {e}",
                               "pip install 'onnxruntime-genai==0.18.0'") from e
    return builder


@functools.lru_cache(maxsize=1)
def builder_writers() -> dict[str, str]:
    """{config.json architecture: the builder's writer class} as the installed builder dispatches them.

    Read from the source of ``onnxruntime_genai.models.builder.create_model`` (its if/elif chain compares
    ``config.architectures[0]`` with string literals and constructs one writer per branch), so a builder upgrade
    that adds a family is picked up without edgeq keeping its own list."""
    src = textwrap.dedent(inspect.getsource(_builder().create_model))
    writers: dict[str, str] = {}
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, ast.If):
            continue
        archs = _compared_architectures(node.test)
        made = [s.value.func.id for s in node.body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call)
                and isinstance(s.value.func, ast.Name) and ast.unparse(s.targets[0]) == "onnx_model"]
        for arch in archs:
            if made:
                writers.setdefault(arch, made[0])
    if not writers:
        raise CaptureError("could not read the architectures onnxruntime-genai's builder dispatches "
                           "(create_model has no config.architectures[0] == ... chain)",
                           "pin onnxruntime-genai==0.18.0 (tested)")
    return writers


def _compared_architectures(test: ast.expr) -> list[str]:
    """The string literals an if-test compares ``config.architectures[0]`` with."""
    found: list[str] = []
    for c in ast.walk(test):
        if isinstance(c, ast.Compare) and "architectures" in ast.unparse(c.left):
            found += [k.value for k in c.comparators if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return found


def supported_architectures() -> tuple[str, ...]:
    """The causal-LM architectures (``...ForCausalLM``) the installed builder writes: the ones edgeq loads."""
    return tuple(sorted(a for a in builder_writers() if a.endswith("ForCausalLM")))


def check_architecture(arch: str) -> str:
    """ARCH (config.json's first architecture), or a typed error naming it and the ones the builder writes."""
    if arch not in builder_writers():
        import onnxruntime_genai  # heavy: onnxruntime-genai, only to build a language model's ONNX folder

        raise ModelSourceError(
            f"the ONNX LM export does not support {arch}: onnxruntime-genai {onnxruntime_genai.__version__}'s "
            f"model builder (onnxruntime_genai/models/builder.py, create_model) has no writer for {arch}",
            f"it writes: {', '.join(supported_architectures())}; export this model with --format pte")
    return arch


def _per_layer_type_rope(builder: ModuleType, config: HFConfig) -> None:
    """Give the builder's writer the RoPE layout it reads, in place on the config it loaded.

    transformers >= 5 stores a model with separate local/global RoPE (Gemma 3) as ``rope_parameters =
    {"full_attention": {...}, "sliding_attention": {...}}``; the builder's ``Model.make_rope_init`` reads the
    flat transformers-4 layout (``rope_parameters["rope_type"]`` + ``rope_local_base_freq``) and fails with
    KeyError 'rope_type'. Writers that override ``make_rope_init`` (Gemma 4) read the nested form themselves and
    are left alone. The values are the same, only their place changes; the tests compare the logits with
    transformers'."""
    rope = getattr(config, "rope_parameters", None)
    if not (isinstance(rope, dict) and "rope_type" not in rope and isinstance(rope.get("full_attention"), dict)):
        return
    writer = getattr(builder, builder_writers().get(str(config.architectures[0]), ""), None)
    if writer is None or writer.make_rope_init is not builder.Model.make_rope_init:
        return
    if isinstance(rope.get("sliding_attention"), dict) and not hasattr(config, "rope_local_base_freq"):
        config.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
    config.rope_parameters = dict(rope["full_attention"])


@contextlib.contextmanager
def _position_ids_input(builder: ModuleType) -> Iterator[None]:
    """Make the builder keep ``position_ids`` (see the module docstring); restored afterwards."""
    cls = getattr(builder, "Model", None)  # the builder's base writer class (untyped third-party code)
    old = getattr(cls, "__dict__", {}).get("is_fused_rope_supported")
    if cls is None or old is None:
        raise CaptureError("this onnxruntime-genai builder has no Model.is_fused_rope_supported hook, so edgeq "
                           "cannot keep the position_ids input", "pin onnxruntime-genai==0.18.0 (tested)")
    cls.is_fused_rope_supported = lambda self: False
    try:
        yield
    finally:
        cls.is_fused_rope_supported = old


def build_onnx(hf_folder: Path, out: Path, v: Variant, cache_dir: Path) -> Path:
    """Write OUT/model.onnx (+ .data), genai_config.json and tokenizer files for variant V."""
    builder = _builder()
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
            _per_layer_type_rope(builder, kv["hf_details"]["hf_config"])
            builder.create_model("", str(hf_folder), str(out), precision, "cpu", str(cache_dir), **kv)
    except CaptureError:
        raise
    except Exception as e:  # the builder raises NotImplementedError/ValueError/KeyError for unsupported models
        raise CaptureError(f"onnxruntime-genai's builder failed on {hf_folder} ({v.name}): {e}",
                           f"the builder writes {', '.join(supported_architectures())}; for others use --format pte") from e
    finally:
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
    if not (out / "model.onnx").is_file():
        raise CaptureError(f"the builder wrote no model.onnx for {v.name}", log.getvalue()[-500:])
    if v.algo == "hqq":
        quantize_hqq(out / "model.onnx", v)
    if (v.bits == 8 or v.algo == "hqq") and v.embedding_bits:
        quantize_embedding(out / "model.onnx", EMBEDDING_BLOCK, v.symmetric)
    _check_io(out / "model.onnx")
    return out


def _check_io(path: Path) -> None:
    """The convention apps rely on: a builder upgrade that drops an input must fail here, not on the device."""
    g = onnx.load(str(path), load_external_data=False).graph
    names = {i.name for i in g.input}
    missing = {"input_ids", "attention_mask", "position_ids", "past_key_values.0.key"} - names
    if missing or "logits" not in {o.name for o in g.output}:
        raise CaptureError(f"the builder's graph lacks {sorted(missing) or ['logits']}",
                           "pin onnxruntime-genai to a version whose builder keeps the separate-RoPE path")


def folder_bytes(folder: Path) -> int:
    """Weights + graph bytes (model.onnx and its external data), not the tokenizer."""
    return sum(p.stat().st_size for p in Path(folder).glob("model.onnx*"))
