"""The chains cross-layer equalization rescales: ``conv [-> batch norm] -> ReLU-like [-> transparent ops] ->
conv / linear``, found in the ``torch.export`` graph and mapped back to the model's modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeq.errors import PassError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Pair:
    """One equalizable chain: producer conv (+ BN), the activation's upper clamp (None = ReLU/identity), the
    consumer and whether the consumer is depthwise."""

    producer: str
    bn: str | None
    clamp: float | None
    consumer: str
    depthwise: bool


_TRANSPARENT = {"pad", "constant_pad_nd", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "dropout",
                "dropout_", "view", "reshape", "flatten", "squeeze", "contiguous", "clone"}


def op_name(node: torch.fx.Node) -> str:
    """`aten.conv2d.default` -> `conv2d` (the op name without namespace or overload)."""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _is_zero(value: object) -> bool:
    """A pad value that is absent (the op's default, 0) or the number 0."""
    return value is None or (isinstance(value, int | float) and float(value) == 0.0)


def _zero_pad(node: torch.fx.Node) -> bool:
    """``aten.pad(x, pad, "constant", 0)`` / ``aten.constant_pad_nd(x, pad, 0)``."""
    args = [*node.args, None, None, None, None]
    if op_name(node) == "constant_pad_nd":
        return _is_zero(args[2])
    return args[2] in (None, "constant") and _is_zero(args[3])


def _number_arg(node: torch.fx.Node, i: int, default: float) -> float | None:
    """Positional argument ``i`` of ``node`` as a number (``default`` when absent); None when it is not one."""
    value = node.args[i] if len(node.args) > i else default
    return float(value) if isinstance(value, int | float) else None


def layer(modules: Mapping[str, torch.nn.Module], name: str) -> torch.nn.Conv2d | torch.nn.Linear:
    """The conv / linear ``find_pairs`` traced under ``name``."""
    import torch  # heavy: torch, imported only where a model is built or run

    m = modules[name]
    if not isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
        raise PassError(f"cross-layer equalization: {name!r} is a {type(m).__name__}, not a conv or linear")
    return m


class _Owners:
    """Which module owns a traced weight: the bridge from the exported graph back to ``model``'s modules."""

    def __init__(self, params: dict[str, str], modules: dict[str, torch.nn.Module]) -> None:
        self.params, self.modules = params, modules

    def owner(self, node: object, kinds: tuple[type, ...]) -> str | None:
        import torch  # heavy: torch, imported only where a model is built or run

        if not isinstance(node, torch.fx.Node) or node.name not in self.params:
            return None
        fqn = self.params[node.name]
        name, _, attr = fqn.rpartition(".")
        mod = self.modules.get(name)
        return name if isinstance(mod, kinds) and attr == "weight" else None


def _single_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def find_pairs(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> list[Pair]:
    """Equalizable producer/consumer pairs of ``model`` (traced once with ``torch.export`` on ``example``)."""
    import torch  # heavy: torch, imported only where a model is built or run

    ep = torch.export.export(model, example, strict=False)
    owners = _Owners(dict(ep.graph_signature.inputs_to_parameters), dict(model.named_modules()))
    pairs = []
    for node in ep.graph.nodes:
        if node.op == "call_function" and op_name(node) == "conv2d":
            pair = _pair_at(node, owners)
            if pair is not None:
                pairs.append(pair)
    return pairs


def _pair_at(conv: torch.fx.Node, owners: _Owners) -> Pair | None:
    """The pair whose producer is the conv node ``conv``: conv -> [batch norm] -> ReLU-like -> [transparent ops]
    -> conv / linear, each the single user of the last; None when the chain is anything else."""
    import torch  # heavy: torch, imported only where a model is built or run

    prod = owners.owner(conv.args[1], (torch.nn.Conv2d,))
    if prod is None:
        return None
    cur, bn = _single_user(conv), None
    if cur is not None and op_name(cur) == "batch_norm":
        bn = owners.owner(cur.args[1], (torch.nn.BatchNorm2d,))
        if bn is None:
            return None
        cur = _single_user(cur)
    if cur is None:
        return None
    homogeneous, clamp = _activation_clamp(cur)
    if not homogeneous:
        return None  # identity / other activations: not positively homogeneous or not worth it
    cur = _single_user(cur)
    while cur is not None and op_name(cur) in _TRANSPARENT:
        if op_name(cur) in ("pad", "constant_pad_nd") and not _zero_pad(cur):
            return None  # non-zero / reflect padding does not commute with per-channel scaling
        cur = _single_user(cur)
    if cur is None or op_name(cur) not in ("conv2d", "linear"):
        return None
    kinds: tuple[type, ...] = (torch.nn.Conv2d,) if op_name(cur) == "conv2d" else (torch.nn.Linear,)
    cons = owners.owner(cur.args[1], kinds)
    if cons is None:
        return None
    c = layer(owners.modules, cons)
    producer = owners.modules[prod]
    if not isinstance(producer, torch.nn.Conv2d):
        return None  # owner() matched a Conv2d weight: not reached
    out_ch = producer.out_channels
    depthwise = isinstance(c, torch.nn.Conv2d) and c.groups == out_ch == c.in_channels
    if isinstance(c, torch.nn.Conv2d) and c.groups != 1 and not depthwise:
        return None  # grouped convs: not handled
    if isinstance(c, torch.nn.Linear) and c.in_features != out_ch:
        return None  # flatten over spatial positions: channel i is not column i
    return Pair(prod, bn, clamp, cons, depthwise)


def _activation_clamp(node: torch.fx.Node) -> tuple[bool, float | None]:
    """(whether ``node`` is a ReLU-like activation CLE can scale through, its upper clamp: None for ReLU)."""
    if op_name(node) in ("relu", "relu_"):
        return True, None
    if op_name(node) in ("relu6", "relu6_"):
        return True, 6.0
    if op_name(node) in ("hardtanh", "hardtanh_") and _number_arg(node, 1, -1.0) == 0.0:
        clamp = _number_arg(node, 2, 1.0)
        return clamp is not None, clamp  # a traced (non-constant) upper bound: not scaled through
    return False, None
