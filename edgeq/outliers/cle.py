"""Cross-layer (activation-range) equalization for convolution nets (after Nagel et al. 2019, "Data-Free
Quantization", section 4.1), clamp-aware so that ReLU6 networks stay exact.

The failure it targets: after ``conv -> BN -> ReLU6`` the channels of one activation tensor span very different
ranges (in EfficientNet-Lite0 / MobileNet expand convs some channels reach 6, many stay below 0.1), and INT8 gives
the whole tensor *one* scale, so the quiet channels get a handful of levels. Because the activation is positively
homogeneous, channel ``i`` can be scaled by ``1/s_i`` in the producer (BN affine, or the conv's weight and bias)
and by ``s_i`` in the consumer's input weights without changing the float function:
``W2 · f(y) = (W2 s) · f(y / s)`` for ``f`` = ReLU / identity.

ReLU6 (``hardtanh(0, 6)``) is not scale-equivariant: ``clip(y/s, 0, 6) = clip(y, 0, 6)/s`` only where
``y <= 6·min(1, s)``. Scales are therefore chosen with ``s_i >= max_i / 6`` where ``max_i`` is channel ``i``'s
calibration maximum before the clamp, and channels that saturate keep ``s_i = 1``: the rewrite is exact on every
calibration sample, and beyond the calibration maximum it clips exactly where the INT8 activation range (itself
calibrated to that maximum) clips anyway.

With per-channel INT8 weights (what both backends use) the weight side of the classic DFQ balance matters only
for the consumer's input columns: for a depthwise consumer the scaling is free (one weight scale per channel), so
every quiet channel is raised to the tensor's range (``s_i = a_i / A``); for a 1x1 conv or Linear consumer the
strength ``s_i = (a_i / A)^alpha`` is chosen per pair by simulated INT8 error on sampled calibration pixels
(``alpha = 0``, leave alone, is always a candidate).

Pairs are found on a ``torch.export`` graph — ``conv -> [batch_norm] -> relu|hardtanh(0, c) -> [zero pad |
pooling | flatten | dropout] -> conv|linear`` with a single consumer along the chain — and mapped back to the
modules that own the weights, so no model-specific names are needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import PassError, UsageError
from edgeq.jsontypes import JSONObject
from edgeq.outliers.stats import batches, run_hooked

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.stats import ObserveHook, OutputHook


@dataclass(frozen=True)
class CLEConfig:
    """Clamp-aware cross-layer equalization of ``conv -> act -> conv/linear`` pairs."""

    calibration_samples: int = 32
    max_scale: float = 32.0  # a channel is raised by at most this factor (bounds the producer's weight growth)
    # A clamped (ReLU6) channel is raised only so far that values up to headroom x its calibration maximum still
    # pass the clamp unchanged: unseen inputs beyond the calibration range stay exact up to that margin.
    headroom: float = 4.0
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # strengths tried for 1x1 conv / Linear consumers
    rows_per_batch: int = 512  # sampled pixels per calibration batch for the strength choice
    min_gain: float = 0.02  # apply only if the simulated consumer error drops by at least this fraction
    version: int = 1

    def __post_init__(self) -> None:
        if self.calibration_samples < 1:
            raise UsageError(f"calibration_samples must be >= 1, got {self.calibration_samples}")
        if self.headroom < 1.0:
            raise UsageError(f"headroom must be >= 1, got {self.headroom}")
        if self.max_scale < 1.0:
            raise UsageError(f"max_scale must be >= 1, got {self.max_scale}")
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise UsageError(f"alphas must be a non-empty tuple of values in [0, 1], got {self.alphas}")

    def to_dict(self) -> JSONObject:
        return asdict(self)


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


def _layer(modules: Mapping[str, torch.nn.Module], name: str) -> torch.nn.Conv2d | torch.nn.Linear:
    """The conv / linear ``find_pairs`` traced under ``name``."""
    import torch  # heavy: torch, imported only where a model is built or run

    m = modules[name]
    if not isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
        raise PassError(f"cross-layer equalization: {name!r} is a {type(m).__name__}, not a conv or linear")
    return m


def find_pairs(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> list[Pair]:
    """Equalizable producer/consumer pairs of ``model`` (traced once with ``torch.export`` on ``example``)."""
    import torch  # heavy: torch, imported only where a model is built or run

    ep = torch.export.export(model, example, strict=False)
    params = dict(ep.graph_signature.inputs_to_parameters)
    modules = dict(model.named_modules())

    def owner(node: object, kinds: tuple[type, ...]) -> str | None:
        if not isinstance(node, torch.fx.Node) or node.name not in params:
            return None
        fqn = params[node.name]
        name, _, attr = fqn.rpartition(".")
        mod = modules.get(name)
        return name if isinstance(mod, kinds) and attr == "weight" else None

    def single_user(node: torch.fx.Node) -> torch.fx.Node | None:
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    pairs = []
    for node in ep.graph.nodes:
        if node.op != "call_function" or op_name(node) != "conv2d":
            continue
        prod = owner(node.args[1], (torch.nn.Conv2d,))
        if prod is None:
            continue
        cur, bn = single_user(node), None
        if cur is not None and op_name(cur) == "batch_norm":
            bn = owner(cur.args[1], (torch.nn.BatchNorm2d,))
            if bn is None:
                continue
            cur = single_user(cur)
        if cur is None:
            continue
        if op_name(cur) in ("relu", "relu_"):
            clamp = None
        elif op_name(cur) in ("relu6", "relu6_"):
            clamp = 6.0
        elif op_name(cur) in ("hardtanh", "hardtanh_") and _number_arg(cur, 1, -1.0) == 0.0:
            clamp = _number_arg(cur, 2, 1.0)
            if clamp is None:
                continue  # a traced (non-constant) upper bound
        else:
            continue  # identity / other activations: not positively homogeneous or not worth it
        cur = single_user(cur)
        while cur is not None and op_name(cur) in _TRANSPARENT:
            if op_name(cur) in ("pad", "constant_pad_nd") and not _zero_pad(cur):
                cur = None  # non-zero / reflect padding does not commute with per-channel scaling
                break
            cur = single_user(cur)
        if cur is None or op_name(cur) not in ("conv2d", "linear"):
            continue
        kinds: tuple[type, ...] = (torch.nn.Conv2d,) if op_name(cur) == "conv2d" else (torch.nn.Linear,)
        cons = owner(cur.args[1], kinds)
        if cons is None:
            continue
        c = _layer(modules, cons)
        producer = modules[prod]
        if not isinstance(producer, torch.nn.Conv2d):
            continue  # owner() matched a Conv2d weight: not reached
        out_ch = producer.out_channels
        depthwise = isinstance(c, torch.nn.Conv2d) and c.groups == out_ch == c.in_channels
        if isinstance(c, torch.nn.Conv2d) and c.groups != 1 and not depthwise:
            continue  # grouped convs: not handled
        if isinstance(c, torch.nn.Linear) and c.in_features != out_ch:
            continue  # flatten over spatial positions: channel i is not column i
        pairs.append(Pair(prod, bn, clamp, cons, depthwise))
    return pairs


def _sim_int8_error(w: torch.Tensor, x: torch.Tensor) -> float:
    """Squared error of ``x @ w.T`` with per-row symmetric INT8 ``w`` and affine 8-bit per-tensor ``x``."""
    amax = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127.0
    wq = (w / amax).round().clamp(-127, 127) * amax
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = max(hi - lo, 1e-12) / 255.0
    zp = round(-lo / scale)
    xq = ((x / scale).round() + zp).clamp(0, 255).sub(zp) * scale
    return float(((xq @ wq.T) - (x @ w.T)).pow(2).sum())


def equalize(model: torch.nn.Module, calib: Mapping[str, np.ndarray],
             cfg: CLEConfig = CLEConfig()) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Equalize every pair in place (eval mode). Returns (model, per-pair log)."""
    import torch  # heavy: torch, imported only where a model is built or run

    model = model.eval()
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return model, []  # every pair starts at a conv: no trace needed
    first = next(batches(calib, 1))
    try:
        pairs = find_pairs(model, first)
    except Exception as e:  # noqa: BLE001  tracing is best effort: a model it cannot trace is left unchanged
        return model, [{"skipped": f"torch.export failed: {type(e).__name__}: {str(e)[:200]}"}]
    if not pairs:
        return model, []
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(0)
    pre_max: dict[str, torch.Tensor] = {}
    rows: dict[str, list[torch.Tensor]] = {p.consumer: [] for p in pairs if not p.depthwise}

    def out_hook(key: str) -> OutputHook:
        def hook(_m: torch.nn.Module, _a: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            v = out.detach().float().transpose(0, 1).reshape(out.shape[1], -1).amax(1)
            pre_max[key] = torch.maximum(pre_max[key], v) if key in pre_max else v
        return hook

    def in_hook(key: str) -> ObserveHook:
        def hook(_m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float()
            flat = x.transpose(0, 1).reshape(x.shape[1], -1).T if x.dim() == 4 else x.reshape(-1, x.shape[-1])
            take = torch.randperm(flat.shape[0], generator=gen)[:cfg.rows_per_batch]
            rows[key].append(flat[take].clone())
        return hook

    handles = [modules[p.bn or p.producer].register_forward_hook(out_hook(p.producer)) for p in pairs]
    handles += [modules[k].register_forward_pre_hook(in_hook(k)) for k in rows]
    run_hooked(model, calib, cfg.calibration_samples, handles)

    log: list[JSONObject] = []
    with torch.no_grad():
        for p in pairs:
            if p.producer not in pre_max:
                continue  # not reached by the calibration data
            m = pre_max[p.producer]
            a = m.clamp(min=0.0) if p.clamp is None else m.clamp(min=0.0, max=p.clamp)
            top = float(a.max())
            if top <= 0.0:
                continue
            base = (a / top).clamp(min=1.0 / cfg.max_scale)
            cons = _layer(modules, p.consumer)
            if p.depthwise:
                alpha, gain = 1.0, None
            else:
                x = torch.cat(rows[p.consumer])
                w = cons.weight.detach().float().reshape(cons.weight.shape[0], -1)
                if w.shape[1] != x.shape[1]:
                    continue  # k x k consumer: columns are not channels; not simulated, left alone
                errs = {al: _sim_int8_error(w * base.pow(al), x / base.pow(al)) for al in cfg.alphas}
                alpha = min(errs, key=lambda k: errs[k])
                gain = 1.0 - errs[alpha] / max(errs.get(0.0, _sim_int8_error(w, x)), 1e-30)
                if alpha == 0.0 or gain < cfg.min_gain:
                    continue
            s = base.pow(alpha)
            if p.clamp is not None:
                # exactness on the calibration data: the clamp must not cut a value it did not cut before
                need = (m.clamp(min=0.0) * cfg.headroom / p.clamp).clamp(max=1.0)
                # saturating channels, and channels never active on calibration (no evidence of their range),
                # keep s = 1
                s = torch.where((m > p.clamp) | (m <= 0), torch.ones_like(s), torch.maximum(s, need))
            _scale_producer(modules, p, s)
            _scale_consumer(cons, s, p.depthwise)
            entry: JSONObject = {"producer": p.producer, "consumer": p.consumer, "alpha": alpha,
                                     "median_range_ratio_before": round(range_ratio(a), 2),
                                     "median_range_ratio_after": round(range_ratio(a / s), 2)}
            if gain is not None:
                entry["simulated_error_drop"] = round(gain, 3)
            log.append(entry)
    return model, log


def range_ratio(a: torch.Tensor) -> float:
    """Tensor range over the median channel range: how many times coarser the shared INT8 step is for a typical
    channel than a per-channel scale would be (dead channels, range 0, do not count)."""
    alive = a[a > 0]
    return float(alive.max() / alive.median()) if alive.numel() else 1.0


def _scale_producer(modules: Mapping[str, torch.nn.Module], p: Pair, s: torch.Tensor) -> None:
    """Divide output channel ``i`` of the producer (BN affine if there is one, else conv weight/bias) by s_i."""
    import torch  # heavy: torch, imported only where a model is built or run

    if p.bn is not None:
        bn = modules[p.bn]
        if not isinstance(bn, torch.nn.BatchNorm2d) or bn.weight is None or bn.bias is None:
            raise UsageError(f"BatchNorm {p.bn!r} has no affine parameters to scale",
                             "construct it with affine=True or exclude cross-layer equalization")
        bn.weight.div_(s.to(bn.weight.dtype))
        bn.bias.div_(s.to(bn.bias.dtype))
        return
    conv = _layer(modules, p.producer)
    conv.weight.div_(s.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.div_(s.to(conv.bias.dtype))


def _scale_consumer(cons: torch.nn.Conv2d | torch.nn.Linear, s: torch.Tensor, depthwise: bool) -> None:
    w = cons.weight
    if depthwise:
        w.mul_(s.reshape(-1, 1, 1, 1).to(w.dtype))
    elif w.dim() == 4:
        w.mul_(s.reshape(1, -1, 1, 1).to(w.dtype))
    else:
        w.mul_(s.reshape(1, -1).to(w.dtype))
