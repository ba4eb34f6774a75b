"""Dependency tracking for structured pruning, on the ``torch.export`` ATen graph of the model.

A *channel group* is a Conv2d (groups=1) or Linear whose output channels can be removed: every path from its
output passes only through channel-wise ops (BatchNorm, activations, pooling, dropout) and a flatten, and ends in
the input of another Conv2d / Linear. Removing channel c then means slicing the producer's weight rows and bias,
the BatchNorm entries, and the consumers' input columns (``factor`` columns per channel after a flatten).
Anything else on the path — a residual add, concat, the model output, a reshape we cannot map, a shared weight —
makes the group unprunable: we never guess.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ParamSlice:
    """``fqn`` is sliced along ``dim``; channel c owns entries [c·factor, (c+1)·factor)."""

    fqn: str
    dim: int
    factor: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    producer: str  # module path of the Conv2d / Linear whose outputs are removed
    channels: int
    slices: tuple[ParamSlice, ...]
    consumers: tuple[str, ...]


class _Unprunable(Exception):
    """Internal: a path from the producer reaches an op we cannot map channel-wise."""


def _ops() -> dict[str, set[object]]:  # kind -> aten overloads (compared with node.target)
    import torch  # heavy: torch, imported only where a model is built or run

    a = torch.ops.aten
    return {
        "unary": {a.relu.default, a.relu_.default, a.gelu.default, a.silu.default, a.sigmoid.default, a.tanh.default,
                  a.hardtanh.default, a.hardswish.default, a.leaky_relu.default, a.relu6.default, a.elu.default,
                  a.dropout.default, a.clone.default, a.contiguous.default, a.hardsigmoid.default, a.mish.default,
                  a.gelu_.default, a.silu_.default, a.hardtanh_.default},
        "pool": {a.max_pool2d.default, a.avg_pool2d.default, a.adaptive_avg_pool2d.default},
        "bn": {a.batch_norm.default},
        "flatten": {a.flatten.using_ints, a.view.default, a.reshape.default, a._unsafe_view.default},
        "mean": {a.mean.dim},
        "conv": {a.conv2d.default},
        "linear": {a.linear.default},
    }


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    if val is None or not hasattr(val, "shape"):
        return None
    try:
        return tuple(int(d) for d in val.shape)
    except (TypeError, ValueError):
        return None


def find_groups(model: torch.nn.Module, example_args: tuple[torch.Tensor, ...]) -> list[ChannelGroup]:
    """All prunable channel groups of ``model`` (exported once, in eval mode, with ``example_args``)."""
    import torch  # heavy: torch, imported only where a model is built or run

    was_training = model.training
    model.eval()
    try:
        ep = torch.export.export(model, example_args, strict=False)
    finally:
        model.train(was_training)
    params = dict(ep.graph_signature.inputs_to_parameters)
    buffers = dict(ep.graph_signature.inputs_to_buffers)
    names = {**params, **buffers}
    ops = _ops()
    groups = []
    for node in ep.graph.nodes:
        if node.op != "call_function" or node.target not in ops["conv"] | ops["linear"]:
            continue
        try:
            groups.append(_group_for(node, names, ops))
        except _Unprunable:
            continue
    return groups


def _weight_fqn(node: torch.fx.Node, names: dict[str, str], idx: int) -> str:
    import torch  # heavy: torch, imported only where a model is built or run

    w = node.args[idx] if len(node.args) > idx else None
    if not isinstance(w, torch.fx.Node) or w.op != "placeholder" or w.name not in names or len(w.users) != 1:
        raise _Unprunable  # computed or shared weights cannot be sliced independently
    return names[w.name]


def _conv_groups(node: torch.fx.Node) -> int:
    if len(node.args) <= 6:
        return 1
    groups = node.args[6]
    if not isinstance(groups, int):
        raise _Unprunable  # a symbolic group count: the channel mapping is unknown
    return groups


def _group_for(node: torch.fx.Node, names: dict[str, str], ops: dict[str, set[object]]) -> ChannelGroup:
    is_conv = node.target in ops["conv"]
    if is_conv and _conv_groups(node) != 1:
        raise _Unprunable
    wfqn = _weight_fqn(node, names, 1)
    out_shape = _shape(node)
    if out_shape is None:
        raise _Unprunable
    channels = out_shape[1] if is_conv else out_shape[-1]
    slices = [ParamSlice(wfqn, 0)]
    if len(node.args) > 2 and node.args[2] is not None:
        slices.append(ParamSlice(_weight_fqn(node, names, 2), 0))
    consumers: list[str] = []
    # Channel axis state: ("axis1", rank) for NC.. tensors, ("last", factor) once channels sit on the last axis.
    state = ("axis1", 0) if is_conv else ("last", 1)
    _walk(node, state, names, ops, slices, consumers)
    if not consumers:
        raise _Unprunable
    return ChannelGroup(wfqn.rsplit(".", 1)[0], channels, tuple(slices), tuple(consumers))


def _walk(node: torch.fx.Node, state: tuple[str, int], names: dict[str, str], ops: dict[str, set[object]],
          slices: list[ParamSlice], consumers: list[str]) -> None:
    if not node.users:
        raise _Unprunable
    for u in node.users:
        if u.op != "call_function":
            raise _Unprunable  # the graph output: its width is part of the model's contract
        t = u.target
        if u.args[0] is not node:
            raise _Unprunable  # used as a weight / second operand
        if t in ops["unary"]:
            _walk(u, state, names, ops, slices, consumers)
        elif t in ops["bn"] and state[0] == "axis1":
            for i in (1, 2, 3, 4):
                if u.args[i] is not None:
                    slices.append(ParamSlice(_weight_fqn(u, names, i), 0))
            _walk(u, state, names, ops, slices, consumers)
        elif t in ops["pool"] and state[0] == "axis1":
            _walk(u, state, names, ops, slices, consumers)
        elif t in ops["mean"] and state[0] == "axis1":
            dim_arg = u.args[1]
            dim_list = [d for d in dim_arg if isinstance(d, int)] if isinstance(dim_arg, list | tuple) else []
            if not isinstance(dim_arg, list | tuple) or len(dim_list) != len(dim_arg):
                raise _Unprunable
            dims = {d % 4 for d in dim_list}
            keep = bool(u.args[2]) if len(u.args) > 2 else False
            if dims != {2, 3}:
                raise _Unprunable
            _walk(u, state if keep else ("last", 1), names, ops, slices, consumers)
        elif t in ops["flatten"] and state[0] == "axis1":
            _walk(u, ("last", _flatten_factor(node, u)), names, ops, slices, consumers)
        elif t in ops["conv"] and state[0] == "axis1" and _conv_groups(u) == 1:
            slices.append(ParamSlice(_weight_fqn(u, names, 1), 1))
            consumers.append(_weight_fqn(u, names, 1).rsplit(".", 1)[0])
        elif t in ops["linear"] and state[0] == "last":
            slices.append(ParamSlice(_weight_fqn(u, names, 1), 1, state[1]))
            consumers.append(_weight_fqn(u, names, 1).rsplit(".", 1)[0])
        elif t is operator.getitem:
            raise _Unprunable
        else:
            raise _Unprunable


def _flatten_factor(src: torch.fx.Node, flat: torch.fx.Node) -> int:
    """N×C×H×W → N×(C·H·W): each channel becomes H·W consecutive features."""
    s_in, s_out = _shape(src), _shape(flat)
    if s_in is None or s_out is None or len(s_in) != 4 or len(s_out) != 2:
        raise _Unprunable
    if s_out[1] != s_in[1] * s_in[2] * s_in[3]:
        raise _Unprunable
    return s_in[2] * s_in[3]


def channel_scores(model: torch.nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Importance per channel: L1 of the producer's rows × |BN γ| × L1 of the consumers' columns."""
    import torch  # heavy: torch, imported only where a model is built or run

    state = dict(model.named_parameters())
    w = state[group.slices[0].fqn].detach()
    score = w.abs().reshape(w.shape[0], -1).sum(1)
    for s in group.slices[1:]:
        param = state.get(s.fqn)
        if param is None:
            continue  # BatchNorm running statistics
        t = param.detach()
        if s.dim == 0 and s.fqn.endswith(".weight") and t.dim() == 1:
            score = score * t.abs()  # BatchNorm γ
        elif s.dim == 1:
            cols = t.abs().transpose(0, 1).reshape(group.channels, -1).sum(1)
            score = score * cols
    return score + torch.finfo(score.dtype).tiny


def shrink(model: torch.nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Physically remove every channel not in ``keep`` (sorted indices) from the group's tensors."""
    import torch  # heavy: torch, imported only where a model is built or run

    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    touched = set()
    for s in group.slices:
        mod_path, _, leaf = s.fqn.rpartition(".")
        mod = model.get_submodule(mod_path)
        old = getattr(mod, leaf)
        idx = keep if s.factor == 1 else (keep[:, None] * s.factor + torch.arange(s.factor)[None, :]).reshape(-1)
        new = old.detach().index_select(s.dim, idx).clone()
        if isinstance(old, torch.nn.Parameter):
            setattr(mod, leaf, torch.nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            mod._buffers[leaf] = new
        touched.add(mod)
    for mod in touched:
        _fix_attributes(mod)


def _fix_attributes(mod: torch.nn.Module) -> None:
    """Keep the module's size attributes in step with its tensors (repr, re-export and state_dict loading)."""
    from torch import nn  # heavy: torch, imported only where a model is built or run

    if isinstance(mod, nn.Conv2d):
        mod.out_channels = mod.weight.shape[0]
        mod.in_channels = mod.weight.shape[1] * mod.groups
    elif isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = mod.weight.shape
    elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
        mod.num_features = mod.running_mean.shape[0] if mod.running_mean is not None else mod.weight.shape[0]
