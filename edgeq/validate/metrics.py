"""Output-fidelity metrics, all computed in float64.

For every output: cosine similarity per sample (mean and min), SQNR in dB, max |Δ|. For the primary output
(the first) when it is 2-D (N, C>1): top-1 agreement with the reference's argmax (meaningful for class scores)
and nearest-neighbour agreement (meaningful for embeddings: does each sample keep the same nearest neighbour
among the evaluation samples?); with labels, task accuracy of both and the drop in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from edgeq.config import Budget
from edgeq.errors import RunnerError
from edgeq.jsontypes import JSONObject, JSONValue, get_float, get_int


@dataclass(frozen=True)
class Metrics:
    samples: int
    cosine_mean: float
    cosine_min: float
    sqnr_db: float
    max_abs_diff: float
    top1_agreement: float | None = None
    accuracy: float | None = None  # task accuracy of the candidate, in [0, 1]
    reference_accuracy: float | None = None
    nn_agreement: float | None = None

    @property
    def accuracy_drop_pts(self) -> float | None:
        """Drop in task accuracy, percentage points. Needs labels: ``None`` without them."""
        if self.accuracy is not None and self.reference_accuracy is not None:
            return 100.0 * (self.reference_accuracy - self.accuracy)
        return None

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["accuracy_drop_pts"] = self.accuracy_drop_pts
        return {k: _json_float(v) for k, v in d.items()}

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> Metrics:
        """Metrics read back from a manifest (``"inf"`` is an infinite SQNR); a wrong type raises ManifestError."""
        def num(k: str) -> float:
            return math.inf if d.get(k) == "inf" else get_float(d, k)

        def opt(k: str) -> float | None:
            return None if d.get(k) is None else num(k)

        return Metrics(samples=get_int(d, "samples"), cosine_mean=num("cosine_mean"), cosine_min=num("cosine_min"),
                       sqnr_db=num("sqnr_db"), max_abs_diff=num("max_abs_diff"), top1_agreement=opt("top1_agreement"),
                       accuracy=opt("accuracy"), reference_accuracy=opt("reference_accuracy"),
                       nn_agreement=opt("nn_agreement"))


def _json_float(v: JSONValue) -> JSONValue:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)


def cosine_per_sample(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    r, o = _flat(ref), _flat(out)
    num = (r * o).sum(axis=1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(o, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    r = np.asarray(ref, dtype=np.float64)
    noise = float(((r - np.asarray(out, dtype=np.float64)) ** 2).sum())
    signal = float((r**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def looks_like_scores(a: np.ndarray) -> bool:
    return a.ndim == 2 and a.shape[1] > 1


def nn_agreement(ref: np.ndarray, out: np.ndarray) -> float | None:
    """Share of samples whose nearest neighbour (cosine, among the other samples) is the same in both spaces."""
    r, o = _flat(ref), _flat(out)
    if r.shape[0] < 3:
        return None

    def nearest(x: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(x, axis=1, keepdims=True)
        u = x / np.where(n > 0, n, 1.0)
        sim = u @ u.T
        np.fill_diagonal(sim, -np.inf)
        return np.asarray(sim.argmax(axis=1))

    return float((nearest(r) == nearest(o)).mean())


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            labels: np.ndarray | None = None) -> Metrics:
    """Compare candidate outputs with reference outputs (same names, same order of samples)."""
    names = list(reference)
    missing = [n for n in names if n not in candidate]
    if missing:
        raise RunnerError(f"candidate outputs lack {missing}; got {sorted(candidate)}",
                          "the artifact's outputs differ from the float model's")
    for n in names:
        if reference[n].shape != candidate[n].shape:
            raise RunnerError(f"output {n!r} has shape {candidate[n].shape}, the float model gives {reference[n].shape}",
                              "the artifact does not compute the same function; re-export it")
    ref_all = np.concatenate([_flat(reference[n]) for n in names], axis=1)
    out_all = np.concatenate([_flat(candidate[n]) for n in names], axis=1)
    cos = cosine_per_sample(ref_all, out_all)
    primary_ref = np.asarray(reference[names[0]], dtype=np.float64)
    primary_out = np.asarray(candidate[names[0]], dtype=np.float64)
    top1 = acc = ref_acc = nn = None
    if looks_like_scores(primary_ref):
        nn = nn_agreement(primary_ref, primary_out)
        top_r = primary_ref.argmax(axis=1)
        top_o = primary_out.argmax(axis=1)
        top1 = float((top_r == top_o).mean())
        if labels is not None and len(labels) == len(top_r):
            acc = float((top_o == labels).mean())
            ref_acc = float((top_r == labels).mean())
    diff = np.abs(ref_all - out_all)
    return Metrics(
        samples=int(ref_all.shape[0]),
        cosine_mean=float(cos.mean()),
        cosine_min=float(cos.min()),
        sqnr_db=sqnr_db(ref_all, out_all),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        top1_agreement=top1,
        accuracy=acc,
        reference_accuracy=ref_acc,
        nn_agreement=nn,
    )


ACCURACY_FALLBACK = "no labels: accuracy drop checked as top-1 agreement with the float model"
NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class BudgetCheck:
    passed: bool
    failures: tuple[str, ...]
    notes: tuple[str, ...] = ()  # limits that could not be checked (e.g. accuracy without labels)

    def to_dict(self) -> JSONObject:
        return {"passed": self.passed, "failures": list(self.failures), "notes": list(self.notes)}


def check_budget(m: Metrics, budget: Budget) -> BudgetCheck:
    """Each violated limit becomes a human-readable failure naming the measured value and the limit."""
    failures = []
    notes = []
    drop = m.accuracy_drop_pts
    if budget.max_accuracy_drop is not None and drop is None and m.top1_agreement is not None:
        # No labels: the float model's argmax stands in for them, so the drop is bounded by the disagreement.
        drop = 100.0 * (1.0 - m.top1_agreement)
        notes.append(f"{ACCURACY_FALLBACK}: top-1 disagreement {drop:.2f} pt checked against "
                     f"--max-accuracy-drop {budget.max_accuracy_drop:g}")
        if drop > budget.max_accuracy_drop + 1e-9:
            failures.append(f"top-1 disagreement {drop:.2f} pt > {budget.max_accuracy_drop:g} pt ({ACCURACY_FALLBACK})")
    elif budget.max_accuracy_drop is not None and drop is None:
        notes.append(f"{NOT_CHECKED}: accuracy drop (no labels and the outputs are not class scores; use "
                     "--min-cosine for embeddings)")
    elif budget.max_accuracy_drop is not None and drop is not None and drop > budget.max_accuracy_drop + 1e-9:
        failures.append(f"accuracy drop {drop:.2f} pt > {budget.max_accuracy_drop:g} pt")
    if budget.min_cosine is not None and m.cosine_mean < budget.min_cosine:
        failures.append(f"mean cosine {m.cosine_mean:.5f} < {budget.min_cosine:g}")
    if budget.min_sqnr is not None and m.sqnr_db < budget.min_sqnr:
        failures.append(f"SQNR {m.sqnr_db:.2f} dB < {budget.min_sqnr:g} dB")
    if (budget.min_top1_agreement is not None and m.top1_agreement is not None
            and m.top1_agreement < budget.min_top1_agreement):
        failures.append(f"top-1 agreement {m.top1_agreement:.4f} < {budget.min_top1_agreement:g}")
    if budget.min_nn_agreement is not None:
        if m.nn_agreement is None:
            failures.append(f"nearest-neighbour agreement not measurable (needs >= 3 evaluation samples of a 2-D "
                            f"output) but --min-nn-agreement {budget.min_nn_agreement:g} was asked for")
        elif m.nn_agreement < budget.min_nn_agreement:
            failures.append(f"nearest-neighbour agreement {m.nn_agreement:.4f} < {budget.min_nn_agreement:g}")
    return BudgetCheck(not failures, tuple(failures), tuple(notes))


_DISTANCE_LIMITS = (  # budget field, metric attribute, ">=" (a floor) or "<=" (a ceiling)
    ("min_cosine", "cosine_mean", ">="),
    ("min_sqnr", "sqnr_db", ">="),
    ("min_top1_agreement", "top1_agreement", ">="),
    ("min_nn_agreement", "nn_agreement", ">="),
    ("max_accuracy_drop", "accuracy_drop_pts", "<="),
)


def budget_distance(m: Metrics, budget: Budget) -> dict[str, float]:
    """Per limit in force and measurable: how far the metric is from it, signed so that negative = missed
    (``value - floor`` for floors, ``ceiling - value`` for ceilings). What "closest candidate" is close on."""
    out: dict[str, float] = {}
    for bkey, mkey, op in _DISTANCE_LIMITS:
        limit = getattr(budget, bkey)
        value = getattr(m, mkey)
        if limit is None or value is None or not math.isfinite(float(value)):
            continue
        out[mkey] = round(float(value) - limit if op == ">=" else limit - float(value), 6)
    return out


def distance_line(distance: dict[str, float]) -> str:
    """``cosine_mean -0.0012, nn_agreement +0.0083`` (negative = short of the limit)."""
    return ", ".join(f"{k} {v:+.4g}" for k, v in distance.items())
