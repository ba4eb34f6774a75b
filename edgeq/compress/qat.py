"""Quantization-aware training with torchao PT2E: ``prepare_qat_pt2e`` with ExecuTorch's XNNPACK quantizer (QAT
config: fake-quant on weights and activations, conv+BatchNorm folding simulated), distillation fine-tune from the
float model, then the trained weights go back into the eager model.

The trained fake-quant graph is handed to the format backends (:class:`QatGraph`), so both ship the ranges QAT
learnt instead of re-calibrating: ``.pte`` runs ``convert_pt2e`` on this graph and lowers it to XNNPACK; ONNX
quantizes the QAT-trained weights to QDQ with every activation scale / zero point that exists in the ONNX graph
overridden by the QAT observer's (weights: symmetric min/max of the trained weights, the same formula the QAT
weight fake-quant uses).

``qat:4`` trains 4-bit weights (symmetric grid [-8, 7], per channel or per tensor) with INT8 activations.
With ``--train-steps 0`` the same quantizer is only calibrated (observers on, fake quant off): post-training
quantization with the QAT scheme, the baseline QAT is measured against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeq.compress.qat_graph import QatGraph
from edgeq.compress.registry import CompressContext, register
from edgeq.compress.spec import QatConfig
from edgeq.compress.train import deterministic
from edgeq.errors import QuantizationError
from edgeq.jsontypes import JSONObject
from edgeq.targetspec import ExecutorchSpec

if TYPE_CHECKING:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

HANDOFF_KEY = "qat"
CALIBRATION_BATCHES = 16  # --train-steps 0: observer passes over the training data (batch = --train-batch)


def qat_quantizer(per_channel: bool, bits: int = 8) -> XNNPACKQuantizer:
    # optional: the [executorch] extra
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    lo, hi = (-8, 7) if bits == 4 else (-127, 127)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=per_channel, is_qat=True, weight_qmin=lo, weight_qmax=hi))


def prepare(model: torch.nn.Module, example: tuple[torch.Tensor, ...], per_channel: bool,
            bits: int = 8) -> torch.fx.GraphModule:
    """Export with a dynamic batch and insert fake-quant modules (the model's weights are shared, not copied)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e  # optional: the [executorch] extra

    dim = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        gm = torch.export.export(model, example, dynamic_shapes=tuple({0: dim} for _ in example), strict=False).module()
        prepared: torch.fx.GraphModule = prepare_qat_pt2e(gm, qat_quantizer(per_channel, bits))
        return prepared
    except Exception as e:
        raise QuantizationError(f"qat: prepare_qat_pt2e failed: {type(e).__name__}: {str(e)[:300]}",
                                "QAT needs a model torch.export can capture with a dynamic batch") from e


def fake_quant_ranges(prepared: torch.fx.GraphModule) -> dict[str, JSONObject]:
    """scale / zero point of every fake-quant module after training (per-tensor ones; per-channel summarised)."""
    out: dict[str, JSONObject] = {}
    for name, mod in prepared.named_modules():
        if not hasattr(mod, "fake_quant_enabled") or not hasattr(mod, "calculate_qparams"):
            continue
        scale, zp = mod.calculate_qparams()
        s = scale.detach().flatten()
        if s.numel() == 1:
            out[name] = {"scale": float(s.item()), "zero_point": int(zp.flatten()[0].item())}
        else:
            out[name] = {"channels": int(s.numel()), "scale_min": float(s.min()), "scale_max": float(s.max())}
    return out


def activation_ranges(prepared: torch.fx.GraphModule) -> dict[str, tuple[float, int]]:
    """Observed FX node name -> (scale, zero point) for each per-tensor activation fake-quant (weights excluded:
    a weight's fake-quant observes a ``get_attr`` node)."""
    modules = dict(prepared.named_modules())
    out: dict[str, tuple[float, int]] = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not node.args:
            continue
        mod = modules.get(str(node.target))
        if mod is None or not hasattr(mod, "fake_quant_enabled"):
            continue
        src = node.args[0]
        # calculate_qparams: what convert_pt2e puts in the .pte (the fused fake-quant only refreshes its
        # ``scale`` buffer while fake quantization is on, so after a calibration-only pass it is stale)
        scale, zp = mod.calculate_qparams()
        if getattr(src, "op", None) == "get_attr" or scale.numel() != 1:
            continue
        out[str(src.name)] = (float(scale.item()), int(zp.item()))
    return out


def _set_mode(gm: torch.nn.Module, train: bool) -> None:  # a prepared GraphModule
    # optional: the [executorch] extra
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if train else move_exported_model_to_eval)(gm)


def calibrate(prepared: torch.fx.GraphModule, ctx: CompressContext) -> int:
    """PTQ with the QAT scheme: observers see the training data, fake quantization stays off meanwhile."""
    # optional: the [executorch] extra
    import torch
    from torchao.quantization.pt2e.fake_quantize import disable_fake_quant, enable_fake_quant

    data = ctx.trainer.data
    bs = max(1, ctx.trainer.options.batch_size)
    n = min(len(data), CALIBRATION_BATCHES * bs)
    _set_mode(prepared, False)
    prepared.apply(disable_fake_quant)
    # pinned like the fine-tune: the observers' min/max (the PTQ baseline QAT is measured against) must not
    # depend on the machine's core count
    with deterministic(ctx.trainer.options.seed), torch.no_grad():
        for i in range(0, n, bs):
            inputs, _ = data.batch(torch.arange(i, min(n, i + bs)))
            prepared(*inputs)
    prepared.apply(enable_fake_quant)
    return n


def resolve_per_channel(cfg: QatConfig, ctx: CompressContext) -> bool:
    if cfg.per_channel is not None:
        return cfg.per_channel
    if ctx.per_channel is not None:
        return ctx.per_channel
    target = ctx.target
    return bool(target.spec(ExecutorchSpec).per_channel) if target is not None else True


@register("qat")
def apply(model: torch.nn.Module, cfg: QatConfig, ctx: CompressContext) -> tuple[torch.nn.Module, JSONObject]:
    import torch  # heavy: torch, imported only where a model is built or run

    model.eval()
    per_channel = resolve_per_channel(cfg, ctx)
    prepared = prepare(model, ctx.example, per_channel, cfg.bits)
    if ctx.steps > 0:
        ctx.progress.stage(f"qat: fine-tuning with fake-quantized {cfg.bits}-bit weights and INT8 activations")
        tune = ctx.trainer.fine_tune(prepared, ctx.steps, "qat fine-tune", train_mode=_set_mode)
    else:
        ctx.progress.stage("qat: --train-steps 0, calibrating the QAT quantizer only (post-training quantization)")
        tune = {"steps": 0, "calibration_samples": calibrate(prepared, ctx)}
    _set_mode(prepared, False)
    trained = prepared.state_dict()
    own = model.state_dict()
    copied = [k for k in own if k in trained and trained[k].shape == own[k].shape]
    if not copied:
        raise QuantizationError("qat: the prepared graph kept none of the model's parameter names",
                                "this torch/torchao version renames parameters on export; please report it")
    with torch.no_grad():
        model.load_state_dict({k: trained[k] for k in copied}, strict=False)
    graph = QatGraph(prepared, cfg.bits, per_channel, ctx.steps > 0, activation_ranges(prepared))
    if ctx.handoff is not None:
        ctx.handoff[HANDOFF_KEY] = graph
    ranges = fake_quant_ranges(prepared)
    grid = "per-channel" if per_channel else "per-tensor"
    return model, {"quantizer": f"XNNPACKQuantizer (symmetric, QAT, {cfg.bits}-bit {grid} weights, INT8 activations)",
                   "bits": cfg.bits, "per_channel": per_channel,
                   "fake_quant_modules": len(ranges), "ranges": ranges, "tensors_trained": len(copied),
                   # FX node -> [scale, zero point]: what both formats ship for that activation
                   "activation_ranges": {k: [v[0], v[1]] for k, v in graph.activation_ranges.items()},
                   "fine_tune": tune,
                   "note": f"{graph.describe()}; both formats ship these ranges (.pte: convert_pt2e of the QAT "
                           "graph; ONNX: QDQ with the QAT activation scales / zero points)"}
