"""Fuse ReLU6 (``hardtanh``) into the preceding conv / linear in the PT2E annotation, like the stock ``relu``.

XNNPACK fuses the clamp as the conv's output min / max, so the quantized output may start after it (as ONNX
Runtime's QDQ does for Clip) instead of observing the pre-clamp range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationConfig


def is_clamp_node(node: torch.fx.Node) -> bool:
    """``relu6`` / ``hardtanh`` (clamps): fusable into XNNPACK's conv / linear output min / max."""
    import torch  # heavy: torch, imported only where a model is built or run

    return bool(node.op == "call_function"
                and node.target in (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default,
                                    torch.ops.aten.relu6.default, torch.ops.aten.relu6_.default))


def annotate_clamp_fusions(gm: torch.fx.GraphModule, config: QuantizationConfig,
                           filter_fn: Callable[[torch.fx.Node], bool]) -> int:
    """Annotate ``conv2d|linear -> hardtanh`` like the stock ``conv -> relu`` pattern: the producer's input and
    weights (and bias) are quantized, its output is not, the clamp's output carries the activation observer.
    Returns how many patterns were annotated (the caller runs this before the stock patterns)."""
    # optional: the [executorch] extra
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        _is_annotated,
        _mark_nodes_as_annotated,
    )
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    producers = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    count = 0
    for clamp in gm.graph.nodes:
        if not is_clamp_node(clamp):
            continue
        prod = clamp.args[0]
        if not isinstance(prod, torch.fx.Node) or prod.op != "call_function" or prod.target not in producers:
            continue
        if len(prod.users) > 1 or not isinstance(prod.args[0], torch.fx.Node):
            continue  # the unclamped output is also used elsewhere: it must stay quantizable on its own
        weight = prod.args[1]
        if not isinstance(weight, torch.fx.Node):
            continue
        partition = [clamp, prod, weight]
        qmap = {prod.args[0]: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        bias = prod.args[2] if len(prod.args) > 2 else None
        if isinstance(bias, torch.fx.Node):
            qmap[bias] = get_bias_qspec(config)
            partition.append(bias)
        if _is_annotated(partition) or any(not filter_fn(n) for n in partition):
            continue
        prod.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        _mark_nodes_as_annotated(partition)
        count += 1
    return count
