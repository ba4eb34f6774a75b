"""The .pte LM in ExecuTorch's LLM convention, built with ExecuTorch's own LLM export pieces:
forward(tokens [1, T], input_pos [1]) -> logits with the KV cache as program buffers. Two programs: the default
"custom-sdpa" is ExecuTorch's fast decode path (edgeq.llm.pte_sdpa: the cache and attention as ExecuTorch's
custom ops ``llama::update_cache`` / ``llama::custom_sdpa``); "static-cache" wraps transformers' static cache
(attention over the whole cache behind a mask; kept for families the custom op cannot express, e.g. Gemma 2's
soft-capped attention). torchao quantizes linears (8da4w / 8da8w, ExecuTorch's llama recipe), ExecuTorch's llama source
transform quantizes the embedding table; one torch.export, XNNPACK lowering and serialization configured as
ExecuTorch's LLMEdgeManager does, with the metadata methods the ExecuTorch LLM runner reads (get_max_seq_len,
get_max_context_len, get_bos_id, get_eos_ids, get_vocab_size, use_kv_cache)."""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from edgeq.errors import CaptureError, UsageError
from edgeq.llm.config import Variant
from edgeq.llm.gptq import gptq_model
from edgeq.llm.hf import HFModel, HFTokenizer
from edgeq.llm.pte_delegation import extended_ops_for, partitioners
from edgeq.llm.pte_sdpa import unsupported, wrapper
from edgeq.llm.smooth import smooth_decoder
from edgeq.recipe import block_index

if TYPE_CHECKING:
    import torch
    from torchao.core.config import AOBaseConfig

# the constant methods the ExecuTorch LLM runner reads (get_max_seq_len, get_eos_ids, ...)
PteMetadata: TypeAlias = dict[str, int | bool | list[int]]

PROGRAMS = ("custom-sdpa", "static-cache")


@dataclass(frozen=True)
class PteLowering:
    """How a quantized LM is lowered to ``.pte``."""

    # delegate every XNNPACK-supported op, not only the quantized linears (None: per program,
    # edgeq.llm.pte_delegation.extended_ops_for)
    extended_ops: bool | None = None
    program: str | None = None  # one of PROGRAMS (None: ``program_for(model)``)
    segment_alignment: int | None = None  # the target's page size for the extracted segments (Android: 16 KB)


def program_for(model: HFModel) -> str:
    """The fast custom-SDPA program unless the model's attention needs what the custom op lacks."""
    return "static-cache" if unsupported(model.config.get_text_config()) else "custom-sdpa"


def _static_cache_wrapper(model: HFModel, max_context: int) -> torch.nn.Module:
    # heavy: transformers, only for Hugging Face and language models
    import torch
    from transformers.integrations.executorch import TorchExportableModuleWithStaticCache

    class EtLlm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            model.generation_config.cache_implementation = "static"
            model.generation_config.use_cache = True
            self.inner = TorchExportableModuleWithStaticCache(model, batch_size=1, max_cache_len=max_context)

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=tokens, cache_position=input_pos)  # type: ignore[no-any-return]

    return EtLlm().eval()


def kept_blocks(v: Variant, layers: int) -> frozenset[int]:
    """The decoder blocks (of LAYERS) V keeps at 8 bits: the first and last (``ends``) and every ``block<i>``."""
    ends = {0, layers - 1} if "ends" in v.keep8 else set()
    return frozenset(ends | {i for k in v.keep8 if (i := block_index(k)) is not None})


def quantize_linears(model: HFModel, v: Variant) -> None:
    # optional: the [executorch] extra
    import torch
    from torchao.quantization import (
        Int8DynamicActivationIntxWeightConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_primitives import MappingType

    if v.bits not in (4, 8):
        raise UsageError(f".pte weights must be 4 or 8 bits (got {v.bits})")
    if v.bits == 8 and v.activations == "weight-only":
        # measured with ExecuTorch 1.5.1: the program builds, but its logits are far off float (max |diff| ~1500
        # on a tiny Llama whose logits are ~1), so it is refused rather than shipped
        raise UsageError("8-bit weight-only linears give wrong logits in this ExecuTorch/XNNPACK .pte",
                         "use activations='dynamic-int8' (8da8w: int8 per-token activations, XNNPACK)")

    def config(bits: int, group: int) -> AOBaseConfig:
        gran = PerGroup(group) if group else PerAxis(0)
        dtype = torch.int4 if bits == 4 else torch.int8  # type: ignore[attr-defined]
        # HQQ scale search for 4-bit, as ExecuTorch's llama recipe does by default (plain min/max loses more);
        # GPTQ-rounded weights (edgeq.llm.gptq) are already on the min/max grid, which affine keeps
        algo = "hqq_scale_only" if bits == 4 and v.algo != "gptq" else "affine"
        if v.activations == "dynamic-int8":
            # GPTQ's grid (edgeq.llm.gptq.group_grid) is the one SYMMETRIC_NO_CLIPPING_ERR re-picks
            mapping = MappingType.SYMMETRIC_NO_CLIPPING_ERR if v.algo == "gptq" and bits == 4 else MappingType.SYMMETRIC
            return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=gran,
                                                         weight_mapping_type=mapping,
                                                         intx_choose_qparams_algorithm=algo)
        return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=gran, intx_choose_qparams_algorithm=algo)

    head = model.get_output_embeddings()
    blocks = kept_blocks(v, int(model.config.num_hidden_layers))

    def kept8(m: torch.nn.Module, fqn: str) -> bool:
        """Layers V keeps at 8 bits (per channel): the output projection, and the decoder blocks V names (the
        first and last, which quantization hurts most in small LMs, or the ones measured most sensitive)."""
        if not isinstance(m, torch.nn.Linear):
            return False
        if m is head:
            return "lm_head" in v.keep8
        block = re.search(r"(?:^|\.)(?:layers|h)\.(\d+)\.", fqn)
        return block is not None and int(block.group(1)) in blocks

    def body(m: torch.nn.Module, fqn: str) -> bool:
        if not isinstance(m, torch.nn.Linear) or kept8(m, fqn):
            return False
        return v.group == 0 or m.in_features % v.group == 0

    if v.keep8:
        quantize_(model, config(8, 0), filter_fn=kept8)
    quantize_(model, config(v.bits, v.group), filter_fn=body)


def quantized_model(model: HFModel, v: Variant, calib: np.ndarray | None = None) -> HFModel:
    """A deep copy of MODEL quantized per V exactly as the .pte lowering receives it: SmoothQuant folded into the
    float weights when V asks for it (from the calibration token windows CALIB), torchao's quantized linears and
    ExecuTorch's quantized embedding table. It runs eagerly in torch, which is how the search judges a rung before
    paying for its lowering."""
    import torch  # heavy: torch, imported only where a model is built or run

    if v.keep8_cap:
        raise UsageError(f"{v.name}: its 8-bit groups are measured at search time, not built as written",
                         "resolve it first (edgeq.llm.sensitivity.resolve), or list keep8 explicitly")
    m = copy.deepcopy(model)
    if m.config.tie_word_embeddings and v.bits != 32:
        # the quantized head and the quantized embedding table are different tensors, so untie them first
        head = m.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    if v.smooth:
        if calib is None:
            raise UsageError(f"{v.name} needs calibration windows (SmoothQuant)", "pass calib= token windows")

        # 4-bit weights: the strengths that balance int8 activations against 4-bit groups (AWQ's trade-off)
        smooth_decoder(m, calib, weight_group=(v.group or 32) if v.bits == 4 else 0)
    if v.algo == "gptq":
        if calib is None or v.bits != 4 or not v.symmetric:
            raise UsageError(f"{v.name}: GPTQ needs calibration windows and symmetric 4-bit weights (XNNPACK's "
                             "blockwise int4 is symmetric)", "pass calib= token windows")
        # the 4-bit output projection is GPTQ-rounded too (untied above); SmolLM2-135M: see edgeq.llm.search
        head = "lm_head" not in v.keep8 and isinstance(m.get_output_embeddings(), torch.nn.Linear)
        gptq_model(m, calib, v.group, symmetric=True, skip=kept_blocks(v, int(m.config.num_hidden_layers)),
                   head=head)
    if v.bits != 32:
        quantize_linears(m, v)
    if v.embedding_bits:
        # optional: the [executorch] extra
        from executorch.examples.models.llama.source_transformation.quantize import (
            get_quant_embedding_transform,
        )

        # 8-bit: one scale per row (ExecuTorch's llama default); 4-bit: one per group of V.group columns, as its
        # llama export with --embedding-quantize 4,32
        group = (v.group or 32) if v.embedding_bits == 4 else 0
        m = get_quant_embedding_transform(f"{v.embedding_bits},{group}")(m)
    return m


def lower(wrapped: torch.nn.Module, v: Variant, max_context: int, meta: PteMetadata,
          lowering: PteLowering = PteLowering(program="custom-sdpa")) -> bytes:
    """The program bytes of WRAPPED (forward(tokens, input_pos)): one strict torch.export with a dynamic token
    dimension, XNNPACK lowering, and the ExecutorchBackendConfig of ExecuTorch's LLMEdgeManager.to_executorch
    (delegate segments extracted, quant fusion + constant propagation, planned memory without graph inputs).
    LLMEdgeManager itself exports twice (export(), then again inside to_edge_transform_and_lower); once is
    enough. The custom-SDPA program is exported a second time after ExecuTorch's RemoveRedundantTransposes (the
    cache's [B, S, H, D] -> [B, H, S, D] view and the attention's transpose back cancel), as optimum-executorch
    does. ``lowering.segment_alignment``: the target's page size for the extracted segments (Android: 16 KB)."""
    import torch
    from executorch.backends.xnnpack._passes.convert_to_linear import ConvertToLinearPass
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass  # optional: the [executorch] extra
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass
    from torch.nn.attention import SDPBackend, sdpa_kernel

    token_dim = torch.export.Dim("token_dim", max=max_context - 1)
    example = (torch.tensor([[1, 2, 3]], dtype=torch.long), torch.tensor([0], dtype=torch.long))
    # the math SDPA backend and no_grad, as LLMEdgeManager._export: traceable attention, no training ops
    shapes = ({1: token_dim}, None)
    with sdpa_kernel([SDPBackend.MATH]), torch.no_grad():
        ep = torch.export.export(wrapped, example, dynamic_shapes=shapes, strict=True)
        if lowering.program == "custom-sdpa":
            # optional: the [executorch] extra
            from executorch.extension.llm.export.export_passes import RemoveRedundantTransposes

            gm = RemoveRedundantTransposes()(ep.module())[0]
            ep = torch.export.export(gm, example, dynamic_shapes=shapes, strict=True)
        ep = ep.run_decompositions({})
    extended = extended_ops_for(lowering.extended_ops, lowering.program or "custom-sdpa")
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners(v, extended),
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True),
                                       constant_methods=meta)
    edge = edge.transform([ConvertToLinearPass()])
    prog = edge.to_executorch(ExecutorchBackendConfig(
        extract_delegate_segments=True, do_quant_fusion_and_const_prop=True,
        memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
        sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(),
        **({"segment_alignment": lowering.segment_alignment} if lowering.segment_alignment else {})))
    return bytes(prog.buffer)


def program_ops(pte: Path) -> list[str]:
    """The operators the program's forward calls outside its delegates (``name.overload``): what runs on
    ExecuTorch's own kernels rather than in XNNPACK."""
    from executorch.exir._serialize._program import deserialize_pte_binary  # optional: the [executorch] extra

    prog = deserialize_pte_binary(Path(pte).read_bytes())
    prog = getattr(prog, "program", prog)  # newer ExecuTorch wraps the program with its named data
    ops = {f"{o.name}.{o.overload}" for plan in prog.execution_plan if plan.name == "forward" for o in plan.operators}
    return sorted(ops)


def custom_ops(pte: Path) -> list[str]:
    """The ``llama::`` custom operators the program's forward calls (empty for the static-cache program): what a
    runtime must link (ExecuTorch's LLM runner does; the wheel's bare C++ runtime does not)."""
    return sorted({o.split(".")[0] for o in program_ops(pte) if o.startswith("llama::")})


def build_pte(model: HFModel, tokenizer: HFTokenizer, out: Path, v: Variant, max_context: int,
              calib: np.ndarray | None = None, lowering: PteLowering = PteLowering()) -> Path:
    """Quantize a deep copy of MODEL per V (CALIB: calibration token windows, needed by smoothed variants) and
    write OUT (.pte), lowered per LOWERING."""
    program = lowering.program or program_for(model)
    if program not in PROGRAMS:
        raise UsageError(f"unknown .pte program {program!r}", f"use one of {', '.join(PROGRAMS)}")
    m = quantized_model(model, v, calib)
    wrapped = wrapper(m, max_context) if program == "custom-sdpa" else _static_cache_wrapper(m, max_context)
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else m.config.bos_token_id
    meta: PteMetadata = {"get_max_seq_len": max_context, "get_max_context_len": max_context,
            "get_vocab_size": int(m.config.vocab_size), "use_kv_cache": True,
            "get_bos_id": int(bos if bos is not None else 0),
            "get_eos_ids": [int(eos)] if eos is not None else [], "enable_dynamic_shape": True}
    logging.getLogger("root").setLevel(logging.WARNING)
    try:
        data = lower(wrapped, v, max_context, meta,
                     replace(lowering, program=program, extended_ops=extended_ops_for(lowering.extended_ops, program)))
    except Exception as e:  # torch.export / ExecuTorch lowering raise many types
        other = PROGRAMS[1 - PROGRAMS.index(program)]
        raise CaptureError(f"ExecuTorch export of {v.name} ({program} program) failed: {type(e).__name__}: {e}",
                           f"try the {other} program (build_pte(lowering=PteLowering(program={other!r})))") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
