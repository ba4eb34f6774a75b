"""Where a real CNN's INT8 error sits: weights only, activations float (a diagnosis, not a bench section).

For each EfficientNet-Lite model of :mod:`bench.real_models`, on the same 64 calibration / 150 held-out crops as
``bench.real_quant``: top-1 agreement with float of (a) per-channel symmetric INT8 weights (BN folded, as the
exporters do) and (b) the same after GPTQ weight rounding (``edgeq.outliers.round_weights``), both with float
activations; and how ambiguous the float model's top-1 is (top-1 probability median, crops whose top two
classes are within 0.05 / 0.10). ``python -m bench.real_weights_only efficientnet_lite1 efficientnet_lite0``.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import numpy as np


def weight_only_int8(model: Any, example: Any) -> Any:
    """A copy of ``model`` with BN folded and every conv / Linear weight on its per-channel INT8 grid."""
    import torch

    from edgeq.outliers.bias_correction import per_channel_int8
    from edgeq.outliers.weight_rounding import fold_batchnorm

    m = copy.deepcopy(model)
    fold_batchnorm(m, (example,))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.weight.copy_(per_channel_int8(mod.weight))
    return m


def diagnose(name: str) -> str:
    import torch

    from bench import real_models as rm
    from bench.real_quant import MODELS, torch_outputs
    from edgeq.outliers import WeightRoundingConfig, round_weights

    t0 = time.perf_counter()
    spec, size = MODELS[name], rm.IMAGE_MODELS[name]
    calib = {"image": rm.photo_crops("calib", spec.n_calib, size=size)}
    ev = {"image": rm.photo_crops("eval", spec.n_eval, size=size)}
    model, ex = getattr(rm, name)()
    ref = torch_outputs(model, ev)
    p = torch.softmax(torch.from_numpy(ref), 1).numpy()
    top2 = np.sort(p, 1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]

    def agree(m: Any) -> float:
        return float((torch_outputs(m, ev).argmax(1) == ref.argmax(1)).mean())

    plain = agree(weight_only_int8(model, ex["image"]))
    variants = {"GPTQ rounding": WeightRoundingConfig(), "act-order": WeightRoundingConfig(act_order=True),
                "act-order + classifier": WeightRoundingConfig(act_order=True, linear=True)}
    rounded = {k: agree(weight_only_int8(round_weights(copy.deepcopy(model), calib, cfg)[0], ex["image"]))
               for k, cfg in variants.items()}
    n = len(ref)
    return (f"{name}: float top-1 probability median {np.median(top2[:, 1]):.3f}, top-2 gap < 0.05 on "
            f"{int((gap < 0.05).sum())}/{n}, < 0.10 on {int((gap < 0.10).sum())}/{n}; weight-only per-channel INT8 "
            f"top-1 agreement {plain:.3f}, "
            + ", ".join(f"{k} {v:.3f}" for k, v in rounded.items()) + f" ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    for model_name in sys.argv[1:] or ["efficientnet_lite1", "efficientnet_lite0"]:
        print(diagnose(model_name), flush=True)
