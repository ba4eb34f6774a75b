"""Per-layer error of the ``.pte`` path: the PT2E-converted graph against the float graph before lowering, node
by node, with torchao's numeric debugger (the same matching by debug handle as
:mod:`edgeq.search.pte_sensitivity`, with the cosine kept), and the measured effect of keeping one node in float.

The quantized graph is rebuilt with edgeq's own ``quantize_pt2e`` and the export's options on the same
calibration samples, so it is the graph the shipped ``.pte`` was lowered from; the numbers are PT2E's simulation
of it on the host, not the XNNPACK kernels' arithmetic. (Not through the ``.pte`` backend's ``build``: that lowers
to a serialized program, whose intermediate tensors the comparison cannot see.)
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.executorch.quantize import quantize_pt2e, sample_args
from edgeq.explain.layers import LayerError, OutputError, added_db, cosine, sqnr_db
from edgeq.signature import TensorSpec
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch


def float_leaves(x: object) -> list[np.ndarray]:
    """The floating-point tensors of any pytree (a logger's stats, a model's outputs), flattened to float64."""
    import torch  # heavy: torch, imported only where a model is built or run
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(x)
    return [t.detach().double().numpy().ravel() for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point()]


def pte_layer_errors(exported: torch.export.ExportedProgram, calib: Dataset, ev: Dataset, signature: list[TensorSpec],
                     opts: QuantOptions, target: Target) -> list[LayerError]:
    """One entry per float-graph node matched in the quantized graph, in graph order."""
    # optional: the [executorch] extra
    import torch
    from torchao.quantization.pt2e import (
        extract_results_from_loggers,
        generate_numeric_debug_handle,
        prepare_for_propagation_comparison,
    )
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    exported = copy.deepcopy(exported)  # the debug handles are written into the node metadata
    generate_numeric_debug_handle(exported)
    float_module = exported.module()
    _fuse_conv_bn_(float_module)  # prepare_pt2e folds BatchNorm into the convolutions: compare like with like
    qep, _ = quantize_pt2e(exported, calib, signature, opts, target)
    ref_model = prepare_for_propagation_comparison(float_module)
    act_model = prepare_for_propagation_comparison(qep.module())
    with torch.no_grad():
        for i in range(len(ev)):
            args = sample_args(ev, signature, i)
            ref_model(*args)
            act_model(*args)
    ref, act = extract_results_from_loggers(ref_model), extract_results_from_loggers(act_model)
    measured: dict[str, tuple[float, float]] = {}
    for key, (name, _stack, ref_stats) in ref.items():
        if key not in act or not name or not ref_stats or len(ref_stats) != len(act[key][2]):
            continue
        r, a = float_leaves(ref_stats), float_leaves(act[key][2])
        if not r or len(r) != len(a) or any(x.shape != y.shape for x, y in zip(r, a, strict=True)):
            continue
        rr, aa = np.concatenate(r), np.concatenate(a)
        measured[name] = (sqnr_db(rr, aa), cosine(rr, aa))
    out: list[LayerError] = []
    for n in float_module.graph.nodes:
        if n.name not in measured:
            continue
        ins = [measured[a.name][0] for a in n.all_input_nodes if a.name in measured]
        db, cos = measured[n.name]
        op = str(getattr(n.target, "__name__", n.target)).split(".")[0]
        out.append(LayerError(len(out), n.name, op, db, cos, added_db(db, ins)))
    return out


# Why "with its input and output": PT2E puts a quantize/dequantize pair on an edge when the producer's output or the
# consumer's input is annotated, so a node excluded alone keeps INT8 edges and only its weight leaves the grid — a
# weight the outlier preparation already rounded onto that grid. Measured on MobileNetV2 (GPTQ-prepared): excluding
# each of the three worst convs alone changed the output SQNR by exactly 0.000 dB; with their producer and consumer
# also float, +0.33 / +0.66 / +0.70 dB.
PTE_FLOAT_MOVE = "kept in float with its input and output"


def pt2e_output_error(exported: torch.export.ExportedProgram, calib: Dataset, ev: Dataset, signature: list[TensorSpec],
                      opts: QuantOptions, target: Target, keep_float: tuple[str, ...] = ()) -> OutputError:
    """Outputs (vs the float graph's) of the PT2E graph built with ``opts``, the ``keep_float`` nodes excluded."""
    if keep_float:
        opts = dataclasses.replace(opts, nodes_to_exclude=tuple(dict.fromkeys((*opts.nodes_to_exclude, *keep_float))))
    qep, _ = quantize_pt2e(exported, calib, signature, opts, target)
    return OutputError.of(sample_outputs(exported.module(), ev, signature), sample_outputs(qep.module(), ev, signature))


def sample_outputs(model: torch.fx.GraphModule, ev: Dataset, signature: list[TensorSpec]) -> list[np.ndarray]:
    """The model's floating-point outputs on each sample of EV, flattened and concatenated per sample."""
    import torch  # heavy: torch, imported only where a model is built or run

    with torch.no_grad():
        return [np.concatenate([a.ravel() for a in float_leaves(model(*sample_args(ev, signature, i)))])
                for i in range(len(ev))]
