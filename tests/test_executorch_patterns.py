"""The XNNPACK quantizer's conv + batch-norm patterns are skipped only where they cannot match: the prepared and
converted graphs are exactly those of the unfiltered quantizer, with and without batch norm in the graph."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer  # noqa: E402
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: E402

import edgeq.executorch.quantize as quantize  # noqa: E402
from edgeq.executorch.graph_filters import patterns_that_can_match  # noqa: E402


class ConvBnNet(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)
        self.up, self.bn2 = torch.nn.ConvTranspose2d(8, 4, 2), torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.up(torch.relu(self.bn(self.conv(x)))))
        return self.fc(y.mean((2, 3)))


class Mlp(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(16, 32), torch.nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _qat_patterns(model: torch.nn.Module, x: torch.Tensor) -> list[str]:
    gm = torch.export.export(model, (x,)).module()
    return [p.name for p in patterns_that_can_match(gm, XNNPACKQuantizer.SUPPORTED_PATTERNS) if p.is_qat]


def _converted(model: torch.nn.Module, x: torch.Tensor, filtered: bool, monkeypatch: pytest.MonkeyPatch
               ) -> tuple[str, np.ndarray]:
    if not filtered:
        monkeypatch.setattr(quantize, "patterns_that_can_match", lambda _m, patterns: list(patterns))
    quantizer = quantize.make_quantizer(quantize.PteQuantSettings("static", True, "minmax"))
    prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    monkeypatch.undo()
    prepared(x)
    converted = convert_pt2e(prepared)
    return converted.code, converted(x).detach().numpy()


def test_conv_bn_patterns_kept_only_where_the_graph_has_batch_norm_and_their_conv() -> None:
    torch.manual_seed(0)
    assert _qat_patterns(ConvBnNet().eval(), torch.randn(1, 3, 12, 12)) == [
        "conv_bn_relu", "conv_bn", "conv_transpose_bn_relu", "conv_transpose_bn"]
    no_bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    assert _qat_patterns(no_bn, torch.randn(1, 3, 8, 8)) == []
    conv_bn_only = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    assert _qat_patterns(conv_bn_only, torch.randn(1, 3, 8, 8)) == ["conv_bn_relu", "conv_bn"]
    assert _qat_patterns(Mlp().eval(), torch.randn(1, 16)) == []


@pytest.mark.parametrize("net", ["conv_bn", "mlp"])
def test_filtered_patterns_annotate_exactly_as_the_full_quantizer(net: str, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    torch.manual_seed(0)
    model, x = (ConvBnNet(), torch.randn(1, 3, 12, 12)) if net == "conv_bn" else (Mlp(), torch.randn(1, 16))
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)  # not the identity: a BN left unfused would change the output
        bn.running_var.uniform_(0.5, 2)
    model.eval()
    full_code, full_out = _converted(model, x, filtered=False, monkeypatch=monkeypatch)
    code, out = _converted(model, x, filtered=True, monkeypatch=monkeypatch)
    assert code == full_code
    assert np.array_equal(out, full_out)
