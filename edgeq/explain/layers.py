"""Per-layer error: each quantized layer's output against the float model's, on a few evaluation samples.

``LayerError.sqnr_db`` is the error accumulated up to that layer (the quantized model's tensor vs the float
model's); ``added_db`` is what the layer itself adds, scored like the search's sensitivity ranking
(:func:`edgeq.search.sensitivity.nsr`): the noise-to-signal power of its output minus that of its noisiest input,
as an SQNR (lower = worse). Layers come in graph order (the plot's x axis).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgeq.jsontypes import JSONObject
from edgeq.search.sensitivity import nsr


@dataclass(frozen=True)
class LayerError:
    index: int  # position in graph order
    layer: str  # ONNX node name / FX node name of the float graph
    op: str
    sqnr_db: float
    cosine: float | None
    added_db: float  # the noise this layer adds beyond its inputs', as an SQNR (lower = worse)
    nodes: tuple[str, ...] = ()  # every float-graph node the layer covers (a Conv whose Relu was folded into it)
    # the model's output SQNR with only this layer quantized (everything else float): what its own quantization
    # costs at the output, amplification by the later layers included (None: not measured)
    alone_db: float | None = None

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["nodes"] = list(self.nodes or (self.layer,))
        for k in ("sqnr_db", "added_db", "cosine", "alone_db"):
            v = d[k]
            if isinstance(v, float) and math.isinf(v):
                d[k] = 999.0  # "no error": JSON has no infinity; 999 dB reads as exact
        return d


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    noise = float(((r - g) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(max(float((r ** 2).sum()), 1e-30) / noise)


@dataclass(frozen=True)
class OutputError:
    """A model's outputs against the float reference on the same samples: the SQNR over all of them, and each
    sample's own squared error (a move's gain is a paired comparison: on how many samples did the error drop)."""

    sqnr_db: float
    sample_noise: tuple[float, ...]

    @staticmethod
    def of(refs: list[np.ndarray], gots: list[np.ndarray]) -> OutputError:
        """REFS[i], GOTS[i]: sample i's outputs, flattened and concatenated."""
        noise = tuple(float(((r.astype(np.float64) - g.astype(np.float64)) ** 2).sum()) for r, g in zip(refs, gots, strict=True))
        return OutputError(sqnr_db(np.concatenate(refs), np.concatenate(gots)), noise)

    def better_samples(self, base: OutputError) -> int:
        """The samples whose outputs are closer to float than under BASE (ties are not better)."""
        return sum(a < b for a, b in zip(self.sample_noise, base.sample_noise, strict=True))


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    den = float(np.linalg.norm(r) * np.linalg.norm(g))
    return 1.0 if den == 0 else float(r @ g / den)


def added_db(out_db: float, in_dbs: list[float]) -> float:
    """The noise power a layer adds beyond its noisiest input, as an SQNR in dB (inf: adds none)."""
    added = max(0.0, nsr(out_db) - max((nsr(d) for d in in_dbs), default=0.0))
    return math.inf if added <= 0 else -10 * math.log10(added)


def worst(layers: list[LayerError], k: int = 3) -> list[LayerError]:
    """The ``k`` layers whose quantization costs the output most: by the output SQNR with the layer quantized alone
    when that was measured, else by the noise the layer adds beyond its inputs (ties: the earlier layer, whose
    error every later one inherits)."""
    if any(x.alone_db is not None for x in layers):
        alone = [x for x in layers if x.alone_db is not None and not math.isinf(x.alone_db)]
        return sorted(alone, key=lambda x: (math.inf if x.alone_db is None else x.alone_db, x.index))[:k]
    return sorted((x for x in layers if not math.isinf(x.added_db)), key=lambda x: (x.added_db, x.index))[:k]
