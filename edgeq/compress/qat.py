"""Quantization-aware training with torchao PT2E: ``prepare_qat_pt2e`` with ExecuTorch's XNNPACK quantizer (QAT
config: fake-quant on weights and activations, conv+BatchNorm folding simulated), distillation fine-tune from the
float model, then the trained weights go back into the eager model.

The fake-quant ranges learnt in training are recorded (scale / zero point per quantized tensor). The format
backends then quantize the QAT-trained weights with their own calibration, so the shipped ranges are re-measured on
the calibration data rather than copied: the weights have learnt to live on an INT8 grid, which is where QAT's gain
comes from, and the record says which ranges were used.
"""

from __future__ import annotations

from typing import Any

from edgeq.compress.registry import CompressContext, register
from edgeq.compress.spec import QatConfig
from edgeq.errors import QuantizationError


def qat_quantizer(per_channel: bool) -> Any:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=True))


def prepare(model: Any, example: tuple[Any, ...], per_channel: bool) -> Any:
    """Export with a dynamic batch and insert fake-quant modules (the model's weights are shared, not copied)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    dim = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        gm = torch.export.export(model, example, dynamic_shapes=tuple({0: dim} for _ in example), strict=False).module()
        return prepare_qat_pt2e(gm, qat_quantizer(per_channel))
    except Exception as e:
        raise QuantizationError(f"qat: prepare_qat_pt2e failed: {type(e).__name__}: {str(e)[:300]}",
                                "QAT needs a model torch.export can capture with a dynamic batch") from e


def fake_quant_ranges(prepared: Any) -> dict[str, dict[str, Any]]:
    """scale / zero point of every fake-quant module after training (per-tensor ones; per-channel summarised)."""
    out: dict[str, dict[str, Any]] = {}
    for name, mod in prepared.named_modules():
        scale = getattr(mod, "scale", None)
        zp = getattr(mod, "zero_point", None)
        if scale is None or zp is None or not hasattr(mod, "fake_quant_enabled"):
            continue
        s = scale.detach().flatten()
        if s.numel() == 1:
            out[name] = {"scale": float(s.item()), "zero_point": int(zp.flatten()[0].item())}
        else:
            out[name] = {"channels": int(s.numel()), "scale_min": float(s.min()), "scale_max": float(s.max())}
    return out


def _set_mode(gm: Any, train: bool) -> None:
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if train else move_exported_model_to_eval)(gm)


@register("qat")
def apply(model: Any, cfg: QatConfig, ctx: CompressContext) -> tuple[Any, dict[str, Any]]:
    import torch

    model.eval()
    prepared = prepare(model, ctx.example, cfg.per_channel)
    ctx.progress.stage("qat: fine-tuning with fake-quantized weights and activations")
    tune = ctx.trainer.fine_tune(prepared, ctx.steps, "qat fine-tune", train_mode=_set_mode)
    trained = prepared.state_dict()
    own = model.state_dict()
    copied = [k for k in own if k in trained and trained[k].shape == own[k].shape]
    if not copied:
        raise QuantizationError("qat: the prepared graph kept none of the model's parameter names",
                                "this torch/torchao version renames parameters on export; please report it")
    with torch.no_grad():
        model.load_state_dict({k: trained[k] for k in copied}, strict=False)
    ranges = fake_quant_ranges(prepared)
    return model, {"quantizer": "XNNPACKQuantizer (symmetric, QAT, per-channel weights)" if cfg.per_channel
                   else "XNNPACKQuantizer (symmetric, QAT, per-tensor weights)",
                   "fake_quant_modules": len(ranges), "ranges": ranges, "tensors_trained": len(copied),
                   "fine_tune": tune,
                   "note": "weights trained under INT8 fake quantization; each format re-calibrates activation "
                           "ranges on the calibration data"}
