"""The LLM ladder as a strategy of the one selection loop (:func:`edgeq.select.ladder.run_ladder`).

Each rung of :func:`edgeq.llm.search.ladder` is one stage with one move, smallest first, so the loop stops at the
first rung inside the perplexity budget; :func:`edgeq.select.rule.pick` then chooses what ships by the same rule as
the tensor searches, and :class:`edgeq.select.summary.Selection` says so in the same words. The ladder's last, most
accurate rung (8-bit) always ships beside the pick as the safe reference, so it is built even when an earlier rung
passed.

"Inside the budget" is the one-sided 95 % upper confidence bound of the perplexity ratio (windows as samples): a
point estimate on a few windows let a rung through that missed on held-out text. ``.pte`` rungs are judged first
on the torchao-quantized eager model (the exact quantized weights the lowering receives; seconds instead of minutes
of lowering), and only a rung that will ship is lowered: one whose estimate is inside the budget, or the
reference. A lowered rung is judged again on its artifact, and that verdict counts. A rung that asks for measured
8-bit groups (``Variant.keep8_cap``) has them measured when the ladder reaches it (:mod:`edgeq.llm.sensitivity`);
its trial records the resolved recipe and the measurement (``sensitivity``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.jsontypes import JSONObject, get_int
from edgeq.llm import measure
from edgeq.llm.config import Variant
from edgeq.llm.metrics import CONFIDENCE, WindowScores, compare, score
from edgeq.llm.pte_export import quantized_model
from edgeq.llm.runners import TorchLM, open_runner
from edgeq.llm.search import ladder
from edgeq.llm.sensitivity import resolve
from edgeq.progress import Progress
from edgeq.select.evaluation import evaluate_perplexity
from edgeq.select.ladder import TrialBudget, run_ladder
from edgeq.select.rule import Scored, pick
from edgeq.select.summary import Selection

Lower = Callable[[measure.Context, Variant], Path]  # builds one variant's artifact


@dataclass(frozen=True)
class Rung:
    """One judged rung: its manifest row, and its artifact when it was lowered (None: judged in torch only)."""

    variant: Variant
    record: JSONObject
    path: Path | None
    shortfall: float = math.inf  # the evaluator's distance to the perplexity budget (0 = inside)

    @property
    def passed(self) -> bool:
        return bool(self.record["passed"]) and self.path is not None

    @property
    def bytes(self) -> int | None:
        """The artifact's size (None: judged in torch only, never lowered)."""
        return get_int(self.record, "bytes") if self.record.get("bytes") is not None else None


@dataclass(frozen=True)
class FormatSelection:
    trials: list[JSONObject]
    ship: list[tuple[Variant, Path]]  # the pick first (when one met the budget), then the reference
    selection: Selection


def select_format(ctx: measure.Context, fmt: str, pr: Progress, lower: Lower = measure.build) -> FormatSelection:
    """Walk FMT's ladder through the one loop, pick by the one rule, and ship the pick plus the 8-bit reference."""
    cands = ctx.cfg.variants and tuple(v for v in ctx.cfg.variants if v.format == fmt) or ladder(fmt)
    last = cands[-1]
    measured: dict[Variant, JSONObject] = {}  # a measured rung's sensitivity record, by its resolved variant
    run = run_ladder(((v.name, (v,)) for v in (_resolve(ctx, c, pr, measured) for c in cands)),
                     lambda _stage, v: _judge(ctx, v, pr, lower, estimate_first=fmt == "pte", reference=v == last),
                     TrialBudget(len(cands)))
    rungs = [replace(r, record={**r.record, "sensitivity": measured[r.variant]}) if r.variant in measured else r
             for r in run.trials]
    if rungs[-1].variant != last:  # an earlier rung passed: the reference is still built, never estimated
        rungs.append(_judge(ctx, last, pr, lower, estimate_first=False, reference=True))
    chosen = pick([Scored(i, r.bytes, r.passed, r.shortfall) for i, r in enumerate(rungs)])
    picked = rungs[chosen.order] if chosen is not None else None
    reference = rungs[-1]
    ship = [(r.variant, r.path) for r in (picked, reference) if r is not None and r.path is not None]
    ship = list(dict.fromkeys(ship))  # the reference may be the pick
    shipped = (f"{picked.variant.name}" if picked is not None
               else f"the 8-bit reference {reference.variant.name} (the ladder's most accurate rung)")
    sel = Selection(f"llm-{fmt}", picked is not None, len(rungs), run.stopped, shipped, run.time_capped)
    pr.stage(sel.line())
    return FormatSelection([r.record for r in rungs], ship, sel)


def _resolve(ctx: measure.Context, v: Variant, pr: Progress, measured: dict[Variant, JSONObject]) -> Variant:
    """V, with its 8-bit groups measured when it asks for that (``keep8_cap``): only once the ladder reaches it (the
    generator is lazy), so a rung that passed earlier spares the measurement."""
    if not v.keep8_cap:
        return v
    pr.stage(f"{v.format}: {v.name}: measuring each group's sensitivity on the calibration windows")
    t0 = time.perf_counter()
    got, record = resolve(ctx.lm.model, ctx.calib_windows, v, ctx.fbytes)
    measured[got] = {**record, "measure_s": round(time.perf_counter() - t0, 1)}
    kept = [g for g in got.keep8 if g not in v.keep8]
    pr.stage(f"{v.format}: kept at 8 bits by measured sensitivity: {', '.join(kept) or 'none'} "
             f"(predicted {record['predicted_bytes']} bytes, cap {v.keep8_cap:g}x float)")
    return got


def _judge(ctx: measure.Context, v: Variant, pr: Progress, lower: Lower, estimate_first: bool,
           reference: bool) -> Rung:
    """V's rung: a torch estimate first when asked (a miss is not lowered unless V is the reference, which always
    ships), then its artifact's verdict."""
    estimate: WindowScores | None = None
    if estimate_first:
        t0 = time.perf_counter()
        estimate = _torch_estimate(ctx, v, pr)
        judge_s = time.perf_counter() - t0
        em = compare(ctx.calib_scores, estimate)
        ev = evaluate_perplexity(em, ctx.limit, "ppl_ratio_upper")
        ok = ev.passed
        then = "" if ok else ", lowered as the reference" if reference else ", not lowered"
        pr.stage(f"{v.format}: {v.name}: PPL x{em['ppl_ratio']:.3f} in torch ({_bound(em, ctx.limit)}) -> "
                 f"{'inside' if ok else 'outside'} the budget{then}")
        if not ok and not reference:
            return Rung(v, {**_identity(v), "bytes": None, "size_ratio": None, "calib": em,
                            "passed": False, "judged_on": "torch-eager", "judge_s": round(judge_s, 1)}, None,
                        ev.shortfall)
    return _judge_artifact(ctx, v, pr, lower, estimate)


def _judge_artifact(ctx: measure.Context, v: Variant, pr: Progress, lower: Lower,
                    estimate: WindowScores | None) -> Rung:
    pr.stage(f"{v.format}: building {v.name}")
    t0 = time.perf_counter()
    path = lower(ctx, v)
    build_s = time.perf_counter() - t0
    runner = open_runner(path, v.format)
    with pr.bar(len(ctx.calib_scores.nll), f"{v.name} perplexity (calibration text)", unit="window") as bar:
        got: WindowScores = score(runner, ctx.calib_windows, bar=bar)
    m = compare(ctx.calib_scores, got)
    size = measure.artifact_bytes(path, v.format)
    ev = evaluate_perplexity(m, ctx.limit, "ppl_ratio_upper")
    ok = ev.passed
    record: JSONObject = {**_identity(v), "bytes": size,
                              "size_ratio": round(size / ctx.fbytes, 4), "calib": m, "passed": ok,
                              "build_s": round(build_s, 1), "judged_on": "artifact"}
    if estimate is not None:
        # how far the torch estimate was from the artifact it stood in for (XNNPACK's int8 kernels vs torchao's
        # eager ones; measured on the tiny test Llama: ~1e-3 relative, tests/llm/test_pte_torch_judge.py)
        record["torch_eager_calib"] = compare(ctx.calib_scores, estimate)
        record["torch_vs_artifact_ppl_rel_diff"] = float(f"{abs(estimate.ppl / got.ppl - 1):.2e}")
    pr.stage(f"{v.format}: {v.name}: PPL x{m['ppl_ratio']:.3f} ({_bound(m, ctx.limit)}), {size / 1e6:.1f} MB "
             f"({size / ctx.fbytes:.2f}x float) -> {'inside' if ok else 'outside'} the budget")
    return Rung(v, record, path, ev.shortfall)


def _identity(v: Variant) -> JSONObject:
    """A trial's name, its ladder variant, and the recipe it is built from (None: the float build), which
    ``edgeq.llm.build`` builds again (``Variant.from_recipe(format, recipe)`` is the variant)."""
    recipe = v.to_recipe()
    return {"name": v.name, "variant": v.to_dict(), "recipe": None if recipe is None else recipe.to_dict()}


def _bound(m: dict[str, float], limit: float) -> str:
    return f"{CONFIDENCE:.0%} upper bound x{m['ppl_ratio_upper']:.3f}, limit x{limit:.3f}"


def _torch_estimate(ctx: measure.Context, v: Variant, pr: Progress) -> WindowScores:
    """V's calibration-window scores on the eagerly run torchao-quantized model (no lowering)."""
    qm = quantized_model(ctx.lm.model, v, ctx.calib_windows)
    with pr.bar(len(ctx.calib_scores.nll), f"{v.name} perplexity in torch (calibration text)", unit="window") as bar:
        return score(TorchLM(qm, ctx.cfg.max_context), ctx.calib_windows, bar=bar)
