"""One compression method per module, registered by name; the config's ``name`` selects the method."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from edgeq.compress.qat_graph import QatGraph
from edgeq.compress.train import Trainer
from edgeq.jsontypes import JSONObject
from edgeq.progress import Progress
from edgeq.targetspec import Target

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TargetScheme:
    """The quantization the compressed model is headed for (QAT imitates its quantizer settings)."""

    target: Target | None = None
    per_channel: bool | None = None  # --per-channel / --per-tensor (None: the target's setting)


@dataclass
class CompressContext:
    """What a method needs besides the model: the fine-tuner, example inputs, the target, progress."""

    trainer: Trainer
    example: tuple[torch.Tensor, ...]
    progress: Progress
    steps: int  # fine-tune budget for this method
    target: Target | None = None  # edgeq.targets.Target (QAT uses its quantizer settings)
    per_channel: bool | None = None  # --per-channel / --per-tensor (None: the target's setting)
    # In-memory results a method leaves for the format backends (QAT: its trained fake-quant graph).
    handoff: dict[str, QatGraph] | None = None


# apply(model, config, ctx) -> (model, record). The model may be changed in place or replaced. The config is
# each method's own frozen dataclass (edgeq.compress.spec), chosen by name at run time: a Callable taking one
# MethodConfig member cannot stand for the others (parameters are contravariant), so the arguments are left open.
Method: TypeAlias = "Callable[..., tuple[torch.nn.Module, JSONObject]]"
_METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    def deco(fn: Method) -> Method:
        if name in _METHODS:
            raise ValueError(f"compression method {name!r} registered twice")
        _METHODS[name] = fn
        return fn
    return deco


def get_method(name: str) -> Method:
    if name not in _METHODS:
        importlib.import_module(f"edgeq.compress.{name}")
    return _METHODS[name]


def param_count(model: torch.nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


def weight_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear | torch.nn.Conv2d]]:
    """(path, module) of every Linear and Conv2d: the layers the weight-level methods act on."""
    from torch import nn  # heavy: torch, imported only where a model is built or run

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
