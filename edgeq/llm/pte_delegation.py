"""What XNNPACK runs in an LM's ``.pte`` (``--pte-delegation``): every op it takes, or only the dynamically quantized
linears, and the partitioners that lower it so."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.llm.config import Variant

if TYPE_CHECKING:
    from executorch.exir.backend.partitioner import Partitioner

# --pte-delegation → PteLowering.extended_ops (edgeq.llm.pte_export)
DELEGATION_EXTENDED_OPS: dict[str, bool | None] = {"auto": None, "linears": False, "all": True}


def extended_ops_for(extended_ops: bool | None, program: str) -> bool:
    """Whether the PROGRAM is lowered with every op XNNPACK takes: EXTENDED_OPS when set (``all`` / ``linears``).
    Auto (None): yes for the custom-SDPA program, whose graph leaves only the cache and attention ops outside one
    delegate per layer (as optimum-executorch's xnnpack recipe lowers it); no for the static-cache one, which the
    greedy partitioner cuts into ~11 delegates per layer (see ``partitioners``)."""
    return extended_ops if extended_ops is not None else program == "custom-sdpa"


def delegation_of(v: Variant, extended_ops: bool) -> str:
    """What XNNPACK runs in V's program: "all" (every op it takes) or "linears" (only the dynamically quantized
    linears). Only a dynamically quantized variant can be lowered linears-only."""
    return "all" if extended_ops or v.bits == 32 or v.activations != "dynamic-int8" else "linears"


def partitioners(v: Variant, extended_ops: bool) -> list[Partitioner]:
    """XNNPACK partitioners for V. EXTENDED_OPS (ExecuTorch's ``--xnnpack-extended-ops``, optimum-executorch's
    xnnpack recipe): the greedy XnnpackPartitioner, every op XNNPACK takes. Otherwise a dynamically quantized
    variant delegates only its quantized linears, as ExecuTorch's llama recipe does by default
    (get_xnnpack_partitioner(dynamic_quant_only_partitioner=True)), and the float ops between them (RMSNorm, SiLU,
    the residual adds, RoPE) run on ExecuTorch's portable kernels. Which one is right depends on the program
    (``extended_ops_for``): the custom-SDPA graph leaves only the cache and attention ops, the embedding lookup
    and RMSNorm's mean outside one delegate per layer, and delegating all of it decodes SmolLM2-135M 8da8w 3.1x
    faster for ~25 % more CPU to lower (662 vs 530 CPU-s); the HF static-cache graph the greedy partitioner
    splits into ~11 delegates per layer (it rejects views with a symbolic token dimension, mean over the last
    axis, expand, index_put), each re-traced through ~17 XNNPACK passes (~18 CPU-minutes). The
    ``dqlinear_partitioner`` compile spec (read by XnnpackBackend.preprocess) runs only ConvertToLinearPass on
    linear-only delegates, the one pass they need."""
    # optional: the [executorch] extra
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner,
        XnnpackPartitioner,
    )
    from executorch.exir.backend.compile_spec_schema import CompileSpec
    from executorch.exir.backend.partitioner import DelegationSpec

    if delegation_of(v, extended_ops) == "all":
        return [XnnpackPartitioner()]
    part = XnnpackDynamicallyQuantizedPartitioner()
    part.delegation_spec = DelegationSpec("XnnpackBackend", [CompileSpec("dqlinear_partitioner", b"")])
    return [part]
