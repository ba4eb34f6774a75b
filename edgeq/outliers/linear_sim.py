"""Cheap torch simulations of a model's Linear layers under INT8: which activation scheme to try first
(:func:`predict_scheme`) and which Linears matter most (:func:`linear_sensitivity`). Used by :mod:`edgeq.prepare`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.jsontypes import JSONObject
from edgeq.outliers.smoothquant import fake_int8
from edgeq.outliers.stats import batches, first_tensor

if TYPE_CHECKING:
    import torch

# Rows of the calibration set the sensitivity pass runs (one forward per Linear): enough to rank, cheap on 2 cores.
SENSITIVITY_SAMPLES = 8


@dataclass(frozen=True)
class LinearSensitivity:
    """One Linear's share of the simulated all-INT8 output error (``share`` = error removed by keeping it float)."""

    module: str
    share: float
    params: int

    def to_dict(self) -> JSONObject:
        return {"module": self.module, "share": round(self.share, 5), "params": self.params}


@dataclass(frozen=True)
class SchemePrediction:
    """Simulated output error (relative, squared) of the whole model per activation scheme, and the pick per format.

    ``pick`` maps a format to the scheme its search tries first: ``"dynamic"`` unless static per-tensor
    activations are predicted to be clearly better than that format's dynamic ones (:data:`STATIC_FLATTERY`) (ONNX Runtime's dynamic MatMul: one scale per run;
    XNNPACK's dynamic linear: one scale per token), else ``"static"`` (the target's scheme, unchanged).
    """

    errors: Mapping[str, float]
    pick: Mapping[str, str]
    reason: str

    def to_dict(self) -> JSONObject:
        return {"errors": {k: float(f"{v:.4g}") for k, v in self.errors.items()}, "pick": dict(self.pick),
                "reason": self.reason}


# The simulation leaves out a static model's other INT8 tensors (residual adds, softmax, norm inputs), so it
# flatters static: dynamic goes first unless static is simulated to be clearly better — dynamic's error more than
# this factor above static's. Near ties (a model without outliers, errors near float noise) go to dynamic, which
# needs no calibration and is the cheaper model to build and lower.
STATIC_FLATTERY = 2.0
# The dynamic model each format's first model would be: both per token (ONNX through edgeq.onnx.per_token, whose
# first models beat ORT's one scale per tensor on both real encoders measured: docs/explanation/outliers.md).
SCHEME_FOR_FORMAT = {"onnx": "dynamic_per_token", "pte": "dynamic_per_token"}


# Rows the scheme prediction runs (three forwards in all): more than the per-Linear ranking, because the three
# errors can be close and 8 rows decided the tiny test encoder's ONNX pick differently by seed.
PREDICTION_SAMPLES = 32


def predict_scheme(model: torch.nn.Module, calib: Mapping[str, np.ndarray], samples: int = PREDICTION_SAMPLES) -> SchemePrediction:
    """Which activation scheme to try first, from a cheap simulation in torch on the calibration rows.

    Convolution nets (conv-dominated, or with convolutions and no LayerNorm/RMSNorm) are not simulated: their
    activations have no per-token outliers and static INT8 (the target's scheme) is what their kernels are fastest
    with, so it stays first. For linear-dominated models (transformers, MLPs),
    every Linear input is fake-quantized to symmetric INT8 (weights per output channel) three ways — ``static``:
    one scale per tensor from the calibration rows (what a calibrated QDQ model fixes); ``dynamic_per_tensor``:
    one scale per sample (ORT's per-run scale, the host runs one sample at a time); ``dynamic_per_token``: one
    scale per row (XNNPACK's qd8 linears) — and the whole-model output error is measured for each.
    """
    import torch  # heavy: torch, imported only where a model is built or run

    has_conv = any(isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d) for m in model.modules())
    if not linear_dominated(model) or (has_conv and not has_norm_layers(model)):
        # a CNN whose classifier head outweighs its convolutions (the digits CNN) is still a CNN: no LayerNorm /
        # RMSNorm, no per-token outliers, and the static convolutions are what its kernels are fast with
        return SchemePrediction({}, {f: "static" for f in SCHEME_FOR_FORMAT},
                                "convolution net: static INT8 (the target's scheme) first, not simulated")

    def per_sample(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([fake_int8(r, "per_tensor") for r in x]) if x.dim() > 1 else fake_int8(x, "per_tensor")

    quantizers: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"static": lambda x: fake_int8(x, "per_tensor"), "dynamic_per_tensor": per_sample,
                  "dynamic_per_token": lambda x: fake_int8(x, "per_token")}
    # static QDQ also quantizes each Linear's output (one calibrated scale: attention's q/k/v, the FFN's hidden
    # layer); dynamic schemes keep MatMul outputs float
    quant_out = {"static": True, "dynamic_per_tensor": False, "dynamic_per_token": False}
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    qweights = {id(m): fake_int8(m.weight.detach().float(), "per_channel").to(m.weight.dtype) for m in lins}
    args = next(batches(calib, samples, batch=samples))
    errors: dict[str, float] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = first_tensor(model(*args)).float()
        for name, quant in quantizers.items():
            def fwd(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor,
                    quant: Callable[[torch.Tensor], torch.Tensor] = quant, q_out: bool = quant_out[name]) -> torch.Tensor:
                bias = mod.bias if isinstance(mod, torch.nn.Linear) else None  # hooked on Linears only
                y = torch.nn.functional.linear(quant(inp[0]), qweights[id(mod)], bias)
                return quant(y) if q_out else y

            handles = [m.register_forward_hook(fwd) for m in lins]
            try:
                q = first_tensor(model(*args)).float()
            finally:
                for h in handles:
                    h.remove()
            errors[name] = float(((q - ref) ** 2).sum() / (ref**2).sum().clamp(min=1e-20))
    model.train(was_training)
    pick = {f: "dynamic" if errors[s] < STATIC_FLATTERY * errors["static"] else "static"
            for f, s in SCHEME_FOR_FORMAT.items()}
    reason = ("linear-dominated: simulated output error static {static:.3g}, dynamic per-tensor "
              "{dynamic_per_tensor:.3g}, dynamic per-token {dynamic_per_token:.3g}").format(**errors)
    return SchemePrediction(errors, pick, reason)


def has_norm_layers(model: torch.nn.Module) -> bool:
    """A LayerNorm / RMSNorm anywhere (by class, so transformers' own RMSNorm classes count too)."""
    import torch  # heavy: torch, imported only where a model is built or run

    return any(isinstance(m, torch.nn.LayerNorm) or "rmsnorm" in type(m).__name__.lower() for m in model.modules())


def linear_dominated(model: torch.nn.Module) -> bool:
    """Linear weights outnumber convolution weights (transformers, MLPs; not a CNN with a classifier head):
    the search's linear moves (dynamic per-token linears, sensitive linears kept float) are then the ones with
    the largest expected gain."""
    import torch  # heavy: torch, imported only where a model is built or run

    lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d
                                                                            | torch.nn.Conv3d))
    return bool(lin > 0 and lin >= conv)


def linear_sensitivity(model: torch.nn.Module, calib: Mapping[str, np.ndarray], samples: int = SENSITIVITY_SAMPLES,
                       granularity: str = "per_tensor") -> list[LinearSensitivity]:
    """Linears ranked by how much of the simulated all-INT8 output error keeping each one float removes.

    Simulation: every Linear's input fake-quantized to symmetric INT8 (``per_tensor``: ORT's dynamic MatMul and
    static QDQ; ``per_token``: XNNPACK's dynamic linear), its weight per output channel. One forward with all
    quantized, then one per Linear with that Linear float. Linears the calibration data never reaches are left
    out (nothing measured).
    """
    import torch  # heavy: torch, imported only where a model is built or run

    lins = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if not lins:
        return []
    args = next(batches(calib, samples, batch=samples))
    keep_float: set[str] = set()
    reached: set[str] = set()
    qweights = {n: fake_int8(m.weight.detach().float(), "per_channel").to(m.weight.dtype) for n, m in lins.items()}

    def hook(name: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
        def fwd(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            reached.add(name)
            if name in keep_float:
                return out
            bias = mod.bias if isinstance(mod, torch.nn.Linear) else None  # hooked on Linears only
            return torch.nn.functional.linear(fake_int8(inp[0], granularity), qweights[name], bias)
        return fwd

    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = first_tensor(model(*args)).float()
        handles = [m.register_forward_hook(hook(n)) for n, m in lins.items()]
        try:
            def err() -> float:
                q = first_tensor(model(*args)).float()
                return float(((q - ref) ** 2).sum() / (ref**2).sum().clamp(min=1e-20))

            base = err()
            out = []
            for n in [n for n in lins if n in reached]:
                keep_float.clear()
                keep_float.add(n)
                gain = (base - err()) / base if base > 0 else 0.0
                out.append(LinearSensitivity(n, gain, int(lins[n].weight.numel())))
        finally:
            for h in handles:
                h.remove()
    model.train(was_training)
    return sorted(out, key=lambda s: -s.share)
