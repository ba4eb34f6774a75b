"""Learned INT8 weight rounding for convolution nets (AdaRound, Nagel et al. 2020), sequential like BRECQ / QDrop.

Followed: AIMET's AdaRound (``aimet_torch.adaround``: the rectified sigmoid ``h(V) = clip(sigmoid(V)(zeta - gamma)
+ gamma, 0, 1)`` with zeta 1.1 / gamma -0.1, ``V`` initialised so ``h(V)`` equals the fractional part of ``W/s``,
the regulariser ``sum(1 - |2h - 1|^beta)`` with beta annealed 20 -> 2 after a 20 % warm-up, then hard rounding at
``h >= 0.5``) and Sony's model-compression-toolkit soft rounding (the same parametrisation, with the
reconstruction loss taken on the quantized model's inputs). What differs, to fit ~5 minutes on 2 cores:

- The per-layer objective is the exact squared output error over *all* sampled receptive fields of the
  calibration set, ``||W~ X^ - W X||^2`` (``X^``: the layer's input in the INT8 model — earlier layers rounded,
  every conv/linear input fake-quantized to 8-bit per-tensor asymmetric, as ONNX Runtime's QDQ and XNNPACK's
  static scheme quantize it; ``X``: the float model's input). For convs it is carried by Gram matrices
  (``X^T X^`` Cholesky-factored, ``X^T X``), so one step costs ``out x D x D`` whatever the sample count, and the
  gradient is full-batch (no minibatch noise: few hundred steps suffice, and two runs give the same bytes).
  Linears (a classifier: one row per image) keep the rows themselves.
- Layers go in ``passes`` sequential stages (BRECQ / QDrop reconstruct block by block on the quantized model's
  outputs): stage ``k``'s statistics come from a forward through the INT8-simulated model in which stages
  ``< k`` are already rounded, so a layer's rounding absorbs the error accumulated before it. Each stage's
  forwards stop after its last layer.

Weights are symmetric per output channel on the grid both exporters derive (``scale = row |max| / 127``); each
row's largest weight is pinned at exactly +-127 steps (as in :mod:`edgeq.outliers.weight_rounding`), so the scale
the exporter recomputes is this one and it re-rounds to the same integers in ONNX and ``.pte`` alike. A layer
whose learned rounding does not beat round-to-nearest on its own objective keeps nearest.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.outliers.int8_sim import fake_quant, input_ranges
from edgeq.outliers.stats import batches
from edgeq.outliers.weight_rounding import fold_batchnorm
from edgeq.progress import Progress

if TYPE_CHECKING:
    import torch

    from edgeq.outliers.stats import ObserveHook, RewriteHook

    Layer = torch.nn.Conv2d | torch.nn.Linear

ZETA, GAMMA = 1.1, -0.1  # AdaRound's stretch of the sigmoid, so h reaches exactly 0 and 1


@dataclass(frozen=True)
class AdaRoundConfig:
    """Learned rounding of Conv2d (and Linear) weights onto the symmetric per-channel INT8 grid."""

    calibration_samples: int = 200
    batch: int = 16
    passes: int = 4  # sequential stages (1: every layer sees the float-weight model's INT8-simulated inputs)
    iterations: int = 200  # full-batch Adam steps per layer
    lr: float = 0.01
    reg_weight: float = 0.01  # lambda of the rounding regulariser, against an error normalised to nearest's
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2  # fraction of the steps without the regulariser
    patches_per_batch: int = 2048  # receptive fields sampled per conv per calibration batch
    activation_bits: int = 8  # 0: float activations in the objective
    linear: bool = True
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.calibration_samples < 1 or self.batch < 1 or self.passes < 1 or self.iterations < 1:
            raise UsageError("calibration_samples, batch, passes and iterations must be >= 1",
                             f"got {self.calibration_samples}, {self.batch}, {self.passes}, {self.iterations}")
        if not 0.0 <= self.warmup < 1.0:
            raise UsageError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.activation_bits not in (0, 8):
            raise UsageError(f"activation_bits must be 0 or 8, got {self.activation_bits}")

    def to_dict(self) -> JSONObject:
        return asdict(self)


class _Stop(Exception):
    """Raised by a hook after a stage's last layer: the rest of the forward is not needed."""


def _fields(m: torch.nn.Module, x: torch.Tensor, take: int, key: str) -> torch.Tensor:
    """``take`` sampled inputs of layer ``m`` as [groups, take, D]: a conv's receptive fields (gathered at sampled
    output positions, no full im2col), a linear's feature rows. The same ``key`` samples the same positions."""
    import torch  # heavy: torch, imported only where a model is built or run

    if not isinstance(m, torch.nn.Conv2d):
        rows = x.reshape(-1, x.shape[-1])
        return rows[_sample(rows.shape[0], take, key)].unsqueeze(0)
    pad = m.padding
    if isinstance(pad, str):  # "valid" -> 0, "same" (stride 1) -> half the dilated kernel
        pad = (0, 0) if pad == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size,
                                                                                   strict=True))
    (ph, pw), (kh, kw), (sh, sw), (dh, dw) = pad, m.kernel_size, m.stride, m.dilation
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    idx = _sample(x.shape[0] * oh * ow, take, key)
    b, r = idx // (oh * ow), idx % (oh * ow)
    i, j = (r // ow) * sh, (r % ow) * sw
    cols = torch.stack([xp[b, :, i + a * dh, j + c * dw] for a in range(kh) for c in range(kw)], -1)  # [N, C, k]
    return cols.reshape(cols.shape[0], m.groups, -1).permute(1, 0, 2)


def _sample(n: int, take: int, key: str) -> torch.Tensor:
    import torch  # heavy: torch, imported only where a model is built or run

    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:take]


def _stage_problems(ref: torch.nn.Module, model: torch.nn.Module, stage: list[str],
                    ranges: dict[str, tuple[float, float]], calib: Mapping[str, np.ndarray],
                    cfg: AdaRoundConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``(A, T)`` per stage layer with ``||W~ A - T||^2`` = the layer's output error over the sampled inputs."""
    import torch  # heavy: torch, imported only where a model is built or run

    ref_mods, q_mods = dict(ref.named_modules()), dict(model.named_modules())
    last = stage[-1]
    grams: dict[str, list[torch.Tensor]] = {}  # conv: [X^T X^, X^T X] summed
    rows: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # linear: (X^, X) chunks
    captured: dict[str, torch.Tensor] = {}
    batch_no = [0]  # the hooks' sample key: the same positions in the float and the INT8 forward of a batch

    def ref_hook(name: str) -> ObserveHook:
        def pre(m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[name] = _fields(m, args[0].detach().float(), cfg.patches_per_batch, f"{cfg.seed}/{name}/{batch_no[0]}")
            if name == last:
                raise _Stop
        return pre

    def q_hook(name: str) -> RewriteHook:
        def pre(m: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            x = args[0]
            if cfg.activation_bits and name in ranges:
                x = fake_quant(x, *ranges[name], cfg.activation_bits)
            if name in captured:
                xq = _fields(m, x.detach().float(), cfg.patches_per_batch, f"{cfg.seed}/{name}/{batch_no[0]}")
                xf = captured[name]
                if isinstance(m, torch.nn.Linear):
                    rows.setdefault(name, []).append((xq[0], xf[0]))
                else:
                    hq, c = xq.transpose(1, 2).double() @ xq.double(), xq.transpose(1, 2).double() @ xf.double()
                    g = grams.get(name)
                    grams[name] = [hq, c] if g is None else [g[0] + hq, g[1] + c]
            if name == last:
                raise _Stop
            return (x, *args[1:])
        return pre

    with torch.no_grad():
        for b, args in enumerate(batches(calib, cfg.calibration_samples, cfg.batch)):
            batch_no[0] = b
            captured.clear()
            for mod, make, names in ((ref, ref_hook, stage), (model, q_hook, list(ranges))):
                mods = ref_mods if mod is ref else q_mods
                handles = [mods[n].register_forward_pre_hook(make(n)) for n in names]
                try:
                    mod(*args)
                except _Stop:
                    pass
                finally:
                    for h in handles:
                        h.remove()
    return {name: p for name in stage if (p := _problem(q_mods[name], rows.get(name), grams.get(name))) is not None}


def _problem(layer: torch.nn.Module, rows: list[tuple[torch.Tensor, torch.Tensor]] | None,
             gram: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One layer's ``(A, T)``: from its sampled (INT8-path, float-path) input rows (linear), else from its summed
    Gram matrices (conv, via a Cholesky factor); None when the calibration never reached it."""
    import torch  # heavy: torch, imported only where a model is built or run

    if not isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
        return None  # stages hold the convs / linears adaround() chose: not reached
    w = layer.weight.detach().double()
    g = layer.groups if isinstance(layer, torch.nn.Conv2d) else 1
    wg = w.reshape(g, w.shape[0] // g, -1)
    if rows is not None:
        xq = torch.cat([r[0] for r in rows]).double()
        xf = torch.cat([r[1] for r in rows]).double()
        return xq.T.unsqueeze(0), wg @ xf.T.unsqueeze(0)
    if gram is None:
        return None
    hq, c = gram
    d = hq.shape[-1]
    eye = torch.eye(d, dtype=hq.dtype)
    hq = hq + eye * (1e-6 * torch.diagonal(hq, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12))[:, None, None]
    low = torch.linalg.cholesky(hq)  # X^T X^ = L L^T: ||W~ L - T||^2 = ||W~ X^ - W X||^2 + const
    t = torch.linalg.solve_triangular(low, (wg @ c.transpose(1, 2)).transpose(1, 2), upper=False)
    return low, t.transpose(1, 2)


def _learn_rows(w: torch.Tensor, a: torch.Tensor, t: torch.Tensor,
                cfg: AdaRoundConfig) -> tuple[torch.Tensor, float, float]:
    """Learned rounding of ``w`` [G, R, D] on its per-row INT8 grid minimising ``||W~ a - t||^2``.

    Returns (the rounded weights, their error, round-to-nearest's error)."""
    import torch  # heavy: torch, imported only where a model is built or run

    w, a, t = w.float(), a.float(), t.float()
    scale = (w.abs().amax(2, keepdim=True) / 127.0).clamp(min=1e-12)
    ws = w / scale
    base = torch.floor(ws)
    pinned = torch.zeros_like(w, dtype=torch.bool).scatter_(2, w.abs().argmax(2, keepdim=True), True)
    nearest = torch.clamp(torch.round(ws), -127, 127)

    def err(q: torch.Tensor) -> torch.Tensor:
        return ((q * scale) @ a - t).pow(2).sum()

    e_near = float(err(nearest))
    frac = (ws - base).clamp(0.01, 0.99)
    v = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1))
    opt = torch.optim.Adam([v], lr=cfg.lr)
    warm = int(cfg.warmup * cfg.iterations)
    norm = max(e_near, 1e-30)
    for i in range(cfg.iterations):
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        q = torch.where(pinned, nearest, base + h)
        loss = err(q) / norm
        if i >= warm:
            frac_done = (i - warm) / max(cfg.iterations - warm, 1)
            beta = cfg.beta_end + 0.5 * (cfg.beta_start - cfg.beta_end) * (1 + np.cos(np.pi * frac_done))
            loss = loss + cfg.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum() / h.numel()
        opt.zero_grad()
        torch.autograd.backward(loss)  # loss.backward(): Tensor.backward is unannotated in torch
        opt.step()
    with torch.no_grad():
        hard = torch.where(pinned, nearest, torch.clamp(base + (v >= 0).float(), -127, 127))
        return hard * scale, float(err(hard)), e_near


def adaround(model: torch.nn.Module, calib: Mapping[str, np.ndarray], cfg: AdaRoundConfig = AdaRoundConfig(),
             progress: Progress | None = None) -> tuple[torch.nn.Module, list[JSONObject]]:
    """Fold BN, then give every conv (and linear) learned INT8-grid weights, stage by stage. Returns (model, log).

    ``model`` is changed in place (eval mode); ``calib``: forward-argument name -> array, sample axis first."""
    import torch  # heavy: torch, imported only where a model is built or run

    torch.manual_seed(cfg.seed)
    model = model.eval()
    kinds: tuple[type, ...] = (torch.nn.Conv2d, torch.nn.Linear) if cfg.linear else (torch.nn.Conv2d,)
    if not any(isinstance(m, kinds) for m in model.modules()):
        return model, []
    try:
        folded = fold_batchnorm(model, next(batches(calib, 1)))
    except Exception as e:  # noqa: BLE001  tracing is best effort: an untraceable model is left unchanged
        return model, [{"skipped": f"torch.export failed: {type(e).__name__}: {str(e)[:200]}"}]
    layers = {n: m for n, m in model.named_modules() if isinstance(m, kinds)
              and isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and getattr(m, "padding_mode", "zeros") == "zeros"}
    ranges, order = input_ranges(model, layers, calib, cfg.calibration_samples)
    ref = copy.deepcopy(model)  # the float reference the stages reconstruct
    k = min(cfg.passes, len(order))
    stages = [list(s) for s in np.array_split(np.array(order, dtype=object), k) if len(s)]
    log: list[JSONObject] = [{"batchnorm_folded": len(folded), "layers": len(order), "passes": len(stages)}]
    progress = progress or Progress(enabled=False)
    with progress.bar(len(order), "learned rounding (AdaRound)", unit="layer") as bar:
        for stage in stages:
            problems = _stage_problems(ref, model, stage, ranges, calib, cfg)
            for name in stage:
                m = layers[name]
                if name not in problems:
                    bar.update(1)
                    continue
                w = m.weight.detach()
                g = m.groups if isinstance(m, torch.nn.Conv2d) else 1
                q, e_q, e_near = _learn_rows(w.reshape(g, w.shape[0] // g, -1), *problems[name], cfg)
                if e_q < e_near:
                    with torch.no_grad():
                        m.weight.copy_(q.reshape(w.shape).to(w.dtype))
                    log.append({"layer": name, "error_vs_nearest": round(e_q / max(e_near, 1e-30), 3)})
                else:  # nearest on the same grid: the layer still ships what the exporter would round to
                    with torch.no_grad():
                        s = (w.abs().amax(tuple(range(1, w.dim())), keepdim=True) / 127.0).clamp(min=1e-12)
                        m.weight.copy_(torch.clamp(torch.round(w / s), -127, 127) * s)
                bar.update(1)
    return model, log
