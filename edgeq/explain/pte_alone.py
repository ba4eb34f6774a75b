"""Each layer of the ``.pte`` path quantized alone: the PT2E graph prepared and calibrated once, then converted
once per layer with every observer but that layer's removed (its input, weight and output stay observed, so they
are the only Q/DQ pairs after ``convert_pt2e``), and its outputs compared with the float graph's.

One calibration for all layers keeps it to a convert and a few forward passes per layer; a full PT2E rebuild per
layer (prepare, calibrate, convert, export) took 10–18 s each on MobileNetV2's 101 layers.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.executorch.quantize import observed_model
from edgeq.explain.layers import LayerError, OutputError
from edgeq.explain.pte_layers import sample_outputs
from edgeq.signature import TensorSpec
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch

# Ops the XNNPACK quantizer gives their input's quantization (a shared spec) or none at all: alone they quantize
# only a neighbour's tensor, so they are not measured (one convert per layer is the cost here).
SHARES_ITS_INPUTS_GRID = ("hardtanh", "relu", "clamp", "max_pool2d", "flatten", "view", "reshape", "permute",
                          "transpose", "squeeze", "unsqueeze", "dropout", "getitem", "contiguous", "clone")


def measured_alone(layer: LayerError) -> bool:
    return layer.op.rstrip("_").removesuffix(".default") not in SHARES_ITS_INPUTS_GRID


def pte_alone_errors(exported: torch.export.ExportedProgram, calib: Dataset, ev: Dataset,
                     signature: list[TensorSpec], opts: QuantOptions, target: Target,
                     layers: list[LayerError]) -> Iterator[LayerError]:
    """Each of LAYERS, as it is measured, with ``alone_db``: the output SQNR with only that layer's observed
    tensors quantized (None for an op that shares its input's grid: :data:`SHARES_ITS_INPUTS_GRID`)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # optional: the [executorch] extra

    prepared = observed_model(exported, calib, signature, opts, target)[0]  # calibrated once, for every layer
    refs = sample_outputs(exported.module(), ev, signature)
    for layer in layers:
        if not measured_alone(layer):
            yield layer
            continue
        only = _only_observers_of(copy.deepcopy(prepared), set(layer.nodes or (layer.layer,)))
        gots = sample_outputs(convert_pt2e(only), ev, signature)
        yield dataclasses.replace(layer, alone_db=OutputError.of(refs, gots).sqnr_db)


def _only_observers_of(gm: torch.fx.GraphModule, keep: set[str]) -> torch.fx.GraphModule:
    """GM without the observers that neither read nor feed a node of KEEP: convert_pt2e leaves those tensors (and
    the weights they observed) float."""
    # optional: the [executorch] extra
    from torchao.quantization.pt2e.observer import _is_activation_post_process

    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not _is_activation_post_process(modules.get(str(node.target))):
            continue
        src = node.args[0]
        if getattr(src, "name", None) in keep or any(u.name in keep for u in node.users):
            continue
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
    gm.recompile()
    return gm
