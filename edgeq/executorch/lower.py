"""Lower an ExportedProgram to an ExecuTorch program with the XNNPACK partitioner, and report the delegation.

Operators XNNPACK does not take run on ExecuTorch's portable/optimized kernels — correct, but a silent speed
loss on a phone. The delegation report counts them so the manifest, the terminal and the report can say so.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from edgeq.errors import QuantizationError, UsageError
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch
    from executorch.exir import ExecutorchProgramManager

# Graph plumbing, not compute: they never reach a kernel.
_STRUCTURAL = {"getitem", "executorch_call_delegate"}


def lower_to_executorch(exported: torch.export.ExportedProgram, backend_config: JSONObject | None = None,
                        partitioner: str = "xnnpack") -> tuple[ExecutorchProgramManager, JSONObject]:
    """``to_edge_transform_and_lower`` + ``to_executorch``. Returns (ExecutorchProgramManager, delegation report).

    ``partitioner`` is the target's ``[formats.executorch] partitioner`` (targetspec.KNOWN_PARTITIONERS)."""
    # executorch loads torch: imported on use so the ONNX-only paths never pay for it.
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    partitioners = {"xnnpack": XnnpackPartitioner}
    if partitioner not in partitioners:
        raise UsageError(f"unknown ExecuTorch partitioner {partitioner!r}", f"use one of {', '.join(partitioners)}")
    try:
        edge = to_edge_transform_and_lower(exported, partitioner=[partitioners[partitioner]()])
    except Exception as e:
        raise QuantizationError(f"lowering to ExecuTorch (XNNPACK) failed: {type(e).__name__}: {str(e)[:300]}",
                                "the model uses an operator ExecuTorch's edge dialect rejects; try --format onnx") from e
    report = delegation_report(edge.exported_program().graph_module)
    try:
        config = ExecutorchBackendConfig(**(backend_config or {}))
    except TypeError as e:
        raise UsageError(f"invalid ExecuTorch backend option from the target's passes: {e}") from e
    try:
        program = edge.to_executorch(config)
    except Exception as e:
        raise QuantizationError(f"ExecuTorch serialization failed: {type(e).__name__}: {str(e)[:300]}") from e
    return program, report


def _op_name(node: torch.fx.Node) -> str:
    """``aten.convolution`` / ``aten.add.Tensor`` / ``quantized_decomposed.quantize_per_tensor``."""
    import torch  # heavy: torch, imported only where a model is built or run

    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        target = getattr(target, "_op", target)  # EdgeOpOverload wraps the aten OpOverload
    if isinstance(target, torch._ops.OpOverload):
        return str(target).removesuffix(".default")  # "aten.add.Tensor"; the default overload is implied
    return str(getattr(target, "__name__", target))


def delegation_report(gm: torch.fx.GraphModule) -> JSONObject:
    """Compute ops inside XNNPACK delegates vs ops left in the top-level graph (portable kernels)."""
    delegated: collections.Counter[str] = collections.Counter()
    left: collections.Counter[str] = collections.Counter()
    subgraphs = 0
    for node in gm.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            subgraphs += 1
            lowered = getattr(gm, node.target)
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and _short(inner) not in _STRUCTURAL:
                    delegated[_op_name(inner)] += 1
        elif node.op == "call_function" and _short(node) not in _STRUCTURAL:
            left[_op_name(node)] += 1
    total = sum(delegated.values()) + sum(left.values())
    return {
        "backend": "XNNPACK",
        "delegated_ops": sum(delegated.values()),
        "total_ops": total,
        "delegated_share": (sum(delegated.values()) / total) if total else 1.0,
        "delegated_subgraphs": subgraphs,
        "non_delegated": sorted(left),
        "non_delegated_counts": dict(sorted(left.items())),
        "delegated_counts": dict(sorted(delegated.items())),
    }


def _short(node: torch.fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]
