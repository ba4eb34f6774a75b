"""Cross-layer equalization keeps the float function (ReLU6 included) and narrows per-channel activation ranges;
the PT2E quantizer fuses ReLU6 into the conv it follows.

The net is small and seeded, with the mobile-CNN pattern planted: BatchNorm scales spread over two decades, so
after ``conv -> BN -> ReLU6`` a few channels saturate at 6 and most stay far below (as in EfficientNet-Lite0's
expand convs). Claims on the real model are measured by ``bench/real_quant.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.errors import UsageError
from edgeq.outliers import CLEConfig, OutlierConfig, equalize, prepare_for_int8
from edgeq.outliers.cle import range_ratio
from edgeq.outliers.cle_pairs import find_pairs


class MobileBlock(nn.Module):
    """stem conv -> BN -> ReLU6 -> zero pad -> depthwise -> BN -> ReLU6 -> 1x1 conv -> pool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, stride=2, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.pad = nn.ZeroPad2d(1)
        self.dw = nn.Conv2d(16, 16, 3, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 5)
        with torch.no_grad():
            # per-channel scales 0.02 .. 4: channel ranges ~200x apart, the top ones saturate the ReLU6
            self.bn0.weight.copy_(torch.logspace(np.log10(0.02), np.log10(4.0), 16)[torch.randperm(16)])
            self.bn0.bias.uniform_(-0.1, 0.3)
            self.bn1.weight.copy_(torch.logspace(np.log10(0.05), np.log10(3.0), 16)[torch.randperm(16)])
            self.bn1.bias.uniform_(0.0, 0.2)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self.bn0(self.stem(x)))
        h = nn.functional.relu6(self.bn1(self.dw(self.pad(h))))
        h = torch.relu(self.pw(h))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


def _calib(n: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(0, 1, (n, 3, 32, 32)).astype(np.float32)}


def _stem_act_ranges(model: MobileBlock, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        h = nn.functional.relu6(model.bn0(model.stem(x)))
    return h.transpose(0, 1).reshape(16, -1).amax(1)


def test_pairs_found_through_bn_relu6_pad_pool_flatten() -> None:
    pairs = find_pairs(MobileBlock(), (torch.zeros(1, 3, 32, 32),))
    got = {(p.producer, p.bn, p.clamp, p.consumer, p.depthwise) for p in pairs}
    assert ("stem", "bn0", 6.0, "dw", True) in got
    assert ("dw", "bn1", 6.0, "pw", False) in got
    assert ("pw", None, None, "fc", False) in got  # ReLU, then avg-pool + flatten keep channel i = column i


def test_cle_is_exact_in_float_and_narrows_the_ranges() -> None:
    model = MobileBlock()
    calib = _calib()
    x = torch.from_numpy(calib["x"])
    with torch.no_grad():
        ref = model(x)
    before = _stem_act_ranges(model, x)
    assert bool((before >= 6.0).any()), "the planted pattern needs saturating channels"
    model, log = equalize(model, calib, CLEConfig(calibration_samples=24))
    with torch.no_grad():
        out = model(x)
    # exact on every calibration sample, ReLU6 included (saturating channels were left at scale 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    after = _stem_act_ranges(model, x)
    assert range_ratio(after) < range_ratio(before) / 2
    dw = next(e for e in log if e["consumer"] == "dw")
    assert dw["median_range_ratio_after"] < dw["median_range_ratio_before"]
    # held-out inputs within the headroom stay exact too
    x2 = torch.from_numpy(_calib(8, seed=1)["x"])
    with torch.no_grad():
        torch.testing.assert_close(model(x2), MobileBlock()(x2), rtol=1e-3, atol=1e-4)


def test_prepare_for_int8_runs_cle_and_logs_it() -> None:
    log: dict[str, object] = {}
    prepare_for_int8(MobileBlock(), _calib(), OutlierConfig(smoothquant=None, embeddings=None), log=log)
    assert isinstance(log["cle"], list) and log["cle"]
    assert OutlierConfig().to_dict()["cle"]["headroom"] == CLEConfig().headroom


def test_config_rejects_nonsense() -> None:
    with pytest.raises(UsageError):
        CLEConfig(headroom=0.5)
    with pytest.raises(UsageError):
        CLEConfig(alphas=(1.5,))


def test_pt2e_fuses_relu6_into_the_conv() -> None:
    """The stock XNNPACK annotator observes the pre-clamp conv output; edgeq's puts the observer after the
    clamp (the clamp's output, [0, 6]), like conv -> relu."""
    from edgeq.config import QuantOptions
    from edgeq.data import Dataset
    from edgeq.executorch.quantize import quantize_pt2e
    from edgeq.signature import TensorSpec

    model = MobileBlock()
    calib = _calib(8)
    ep = torch.export.export(model, (torch.from_numpy(calib["x"][:1]),), strict=False)
    opts = QuantOptions(mode="static", per_channel=True, max_calibration_samples=8, calibration="minmax")
    qep, info = quantize_pt2e(ep, Dataset(dict(calib)), [TensorSpec("x", "float32", (1, 3, 32, 32))], opts, None)
    assert info["clamp_fusions"] == 2
    # the quantize op right after each hardtanh covers [0, 6], not the wider pre-clamp range
    gm = qep.module()
    scales = [float(n.args[1]) for n in gm.graph.nodes
              if n.op == "call_function" and "quantize_per_tensor" in str(n.target)
              and isinstance(n.args[0], torch.fx.Node) and "relu6" in n.args[0].name]
    assert scales and all(s <= 6.0 / 255 * 1.01 for s in scales)


@pytest.mark.parametrize("act_order", [False, True])
def test_weight_rounding_lands_on_the_int8_grid_with_less_output_error(act_order: bool) -> None:
    """GPTQ-style rounding: the conv weights end on the per-channel INT8 grid the exporters use (so their own
    rounding is the identity) and the output error is below round-to-nearest's on the same grid — also with the
    columns rounded in act-order (permuted, then put back in place)."""
    import copy

    from edgeq.outliers import WeightRoundingConfig, round_weights
    from edgeq.outliers.bias_correction import per_channel_int8

    calib = _calib()
    x = torch.from_numpy(calib["x"])
    original = MobileBlock()
    with torch.no_grad():
        ref = original(x)
    nearest = copy.deepcopy(original)
    rounded, log = round_weights(copy.deepcopy(original), calib,
                                 WeightRoundingConfig(calibration_samples=24, act_order=act_order))
    assert log[0] == {"batchnorm_folded": 2}
    changed = {e["layer"] for e in log[1:]}  # layers where data-aware rounding beat nearest (others untouched)
    assert changed
    with torch.no_grad():
        for m in (nearest, rounded):
            for name, mod in m.named_modules():
                if isinstance(mod, nn.Conv2d):
                    if m is rounded and name in changed:
                        torch.testing.assert_close(per_channel_int8(mod.weight), mod.weight, rtol=0, atol=1e-6)
                    mod.weight.copy_(per_channel_int8(mod.weight))  # what the exporter does
        err_nearest = float((nearest(x) - ref).pow(2).mean())
        err_rounded = float((rounded(x) - ref).pow(2).mean())
    assert err_rounded < 0.7 * err_nearest


def test_weight_rounding_of_linears_lands_on_their_grid() -> None:
    """``linear=True`` (conv nets without SmoothQuant: the classifier) rounds the Linear's rows onto the same
    per-channel INT8 grid, with no more output error than round-to-nearest."""
    import copy

    from edgeq.outliers import WeightRoundingConfig, round_weights
    from edgeq.outliers.bias_correction import per_channel_int8

    calib = _calib()
    original = MobileBlock()
    rounded, log = round_weights(copy.deepcopy(original), calib,
                                 WeightRoundingConfig(calibration_samples=24, linear=True, act_order=True))
    assert "fc" in {e.get("layer") for e in log}
    with torch.no_grad():
        torch.testing.assert_close(per_channel_int8(rounded.fc.weight), rounded.fc.weight, rtol=0, atol=1e-6)
    convs_only, _ = round_weights(copy.deepcopy(original), calib, WeightRoundingConfig(calibration_samples=24))
    assert torch.equal(convs_only.fc.weight, original.fc.weight)  # the default leaves Linears alone
