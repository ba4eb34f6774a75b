"""Per-node sensitivity for the ``.pte`` path: a node-by-node comparison of the PT2E graphs.

ExecuTorch's INT8 program is lowered from torchao's PT2E ``convert_pt2e`` graph, so the comparison runs there,
with torchao's numeric debugger: ``generate_numeric_debug_handle`` tags every node of the float
``ExportedProgram``; the same XNNPACK quantizer edgeq's ``.pte`` backend uses (``make_quantizer``) prepares,
calibrates and converts a copy; ``prepare_for_propagation_comparison`` logs every tagged node's output in both
graphs (BatchNorm folded into convolutions on the float side too, as prepare_pt2e does); outputs are matched by
debug handle. Each node gets the accumulated SQNR of its output and the error
it adds beyond its inputs (same scoring as the ONNX ranking). The numbers describe the quantized graph as
PT2E simulates it on the host, not the XNNPACK kernels' own arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.executorch.quantize import make_quantizer, resolve_settings, sample_args
from edgeq.search.sensitivity import NodeSensitivity, nsr
from edgeq.signature import TensorSpec
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch

# torchao's extract_results_from_loggers, per debug handle: (node name, stack trace, the logged outputs)
LoggedNode: TypeAlias = tuple[str | None, object, Sequence[object]]


def pte_sensitivity(exported: torch.export.ExportedProgram, calib: Dataset, signature: list[TensorSpec], opts: QuantOptions, target: Target,
                    calib_samples: int = 32, max_samples: int = 8) -> list[NodeSensitivity]:
    """Rank the PT2E graph's nodes by the error their INT8 version adds (most sensitive first)."""
    # optional: the [executorch] extra
    import torch
    from torchao.quantization.pt2e import (
        extract_results_from_loggers,
        generate_numeric_debug_handle,
        prepare_for_propagation_comparison,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    generate_numeric_debug_handle(exported)
    # The float logger copy is taken before prepare_pt2e (quantization mutates the module in place), with
    # BatchNorm folded into its convolutions exactly as prepare_pt2e does, so "conv2d" means the same in both.
    float_module = exported.module()
    _fuse_conv_bn_(float_module)
    ref_model = prepare_for_propagation_comparison(float_module)
    prepared = prepare_pt2e(exported.module(), make_quantizer(resolve_settings(opts, target)))
    with torch.no_grad():
        for i in range(min(len(calib), calib_samples)):
            prepared(*sample_args(calib, signature, i))
        act_model = prepare_for_propagation_comparison(convert_pt2e(prepared))
        for i in range(min(len(calib), max_samples)):
            args = sample_args(calib, signature, i)
            ref_model(*args)
            act_model(*args)
    ref, act = extract_results_from_loggers(ref_model), extract_results_from_loggers(act_model)

    sqnr = _node_sqnr(ref, act)
    kinds: dict[str, str] = {}
    graph = float_module.graph  # the BN-folded topology: a ReLU's input is then the convolution
    for n in graph.nodes:
        if n.name in sqnr:
            kinds[n.name] = str(getattr(n.target, "__name__", n.target)).split(".")[0]
    result = []
    for n in graph.nodes:
        if n.name not in sqnr:
            continue
        ins = [sqnr[a.name] for a in n.all_input_nodes if a.name in sqnr]
        in_db = min(ins) if ins else math.inf
        out_db = sqnr[n.name]
        added = max(0.0, nsr(out_db) - nsr(in_db)) if ins else nsr(out_db)
        result.append(NodeSensitivity(n.name, kinds.get(n.name, "?"), n.name, math.nan, out_db, in_db, added))
    result.sort(key=lambda s: -s.added_nsr)
    return result


def _node_sqnr(ref: Mapping[Hashable, LoggedNode], act: Mapping[Hashable, LoggedNode]) -> dict[str, float]:
    """Per float node: the SQNR (dB) of its INT8 counterpart's logged outputs against its own."""
    import torch  # heavy: torch, imported only where a model is built or run

    sqnr: dict[str, float] = {}
    for key, (ref_name, _stack, ref_stats) in ref.items():
        if key not in act or not ref_name:
            continue
        act_stats = act[key][2]
        ref_t, act_t = _float_tensors(ref_stats), _float_tensors(act_stats)
        if not ref_stats or len(ref_stats) != len(act_stats) or ref_t is None or act_t is None:
            continue
        r = torch.cat([x.flatten().double() for x in ref_t])
        a = torch.cat([x.flatten().double() for x in act_t])
        if r.shape != a.shape:
            continue
        noise = float(((r - a) ** 2).sum())
        sqnr[ref_name] = math.inf if noise == 0 else 10 * math.log10(max(float((r ** 2).sum()), 1e-30) / noise)
    return sqnr


def _float_tensors(stats: Sequence[object]) -> list[torch.Tensor] | None:
    """The logged outputs as tensors, or None when one of them is not a floating-point tensor."""
    import torch  # heavy: torch, imported only where a model is built or run

    out = [x for x in stats if isinstance(x, torch.Tensor) and x.is_floating_point()]
    return out if len(out) == len(stats) else None
