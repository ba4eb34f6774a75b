"""The search runs for ``.pte`` too: the first INT8 program misses the budget, a later move meets it and ships."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import edgeq
from edgeq.backends.executorch import static_export
from edgeq.config import Budget
from edgeq.executorch.lower import lower_to_executorch
from edgeq.executorch.quantize import quantize_pt2e
from edgeq.export_inputs import load_model
from edgeq.progress import Progress
from edgeq.recipe import Recipe
from edgeq.select.evaluation import evaluate_tensor
from edgeq.targets import load_target
from edgeq.targetspec import ExecutorchSpec
from edgeq.validate.metrics import Metrics

FIX = Path(__file__).resolve().parent / "fixture_models.py"


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_pte_search_replaces_a_first_model_that_misses(tmp_path: Path, outlier_data: Path) -> None:
    res = edgeq.export(f"{FIX}:outlier_mlp", calib=str(outlier_data), output=tmp_path / "out", formats=("pte",),
                       budget={"min_cosine": 0.999}, outliers="off")  # the PT2E ranking's moves
    s = res.manifest["search_pte"]
    trials = s["trials"]
    assert s["met"] and trials[-1]["passed"] and len(trials) >= 2
    assert not trials[0]["passed"] and trials[0]["failures"]  # the first move did not meet it either
    # each trial scored by the shared evaluator (edgeq.select.evaluation.evaluate_tensor), with the export's budget
    for t in (t for t in trials if t["metrics"]):
        ev = evaluate_tensor(Metrics.from_dict(t["metrics"]), Budget.from_dict(res.manifest["budget"]))
        assert (t["passed"], t["failures"], t["distance"]) == (ev.passed, list(ev.failures), dict(ev.distance))
    assert res.manifest["sensitivity_pte"][0]["op_type"] == "linear"
    art = res.artifact("pte-int8-static")
    assert art.quantization["search"]["trial"] == trials[-1]["index"]
    assert art.quantization["nodes_excluded"]  # the winner keeps the sensitive linear(s) in float
    assert res.passed and all(v.budget_check["passed"] for v in art.validations)
    # the winner records its recipe, and building it again gives the shipped program
    recipe = Recipe.from_dict(art.quantization["recipe"])
    assert recipe.nodes("float", "float16") and recipe.to_quant_options().mode == trials[-1]["mode"]
    cfg = edgeq.load_config(res.output / "edgeq.json", output=tmp_path / "unused")
    model, target = load_model(cfg, load_target(cfg.target), Progress(enabled=False)), load_target(cfg.target)
    qep, _ = quantize_pt2e(static_export(model.quant_captured, model.calib), model.calib,
                           model.quant_captured.signature, recipe.to_quant_options(), target)
    prog, _ = lower_to_executorch(qep, art.details["backend_config"], target.spec(ExecutorchSpec).partitioner)
    assert hashlib.sha256(prog.buffer).hexdigest() == art.sha256


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_pte_search_reports_the_closest_when_nothing_meets(tmp_path: Path, outlier_data: Path) -> None:
    res = edgeq.export(f"{FIX}:outlier_mlp", calib=str(outlier_data), output=tmp_path / "out", formats=("pte",),
                       budget={"min_sqnr": 400.0}, outliers="off")  # beyond even float32 kernel differences
    s = res.manifest["search_pte"]
    assert not s["met"] and s["closest"] and not res.passed
    art = res.artifact("pte-int8-static")
    assert "search" not in (art.quantization or {})  # the first model stays: no rejected trial ships


def test_a_move_keeping_more_float_than_an_over_cap_trial_is_not_built() -> None:
    """Mixed-precision moves grow k: once one is over --max-size-ratio, every later one that keeps at least the
    same layers float is too, and is recorded as not built instead of lowered and run."""
    from edgeq.config import QuantOptions
    from edgeq.search.pte_search import PteTrial, _over_cap_subset

    def keep(*names: str, fp16: bool = True) -> QuantOptions:
        return QuantOptions(mode="dynamic", nodes_to_exclude=names, fp16_float_linears=fp16)

    fits, over = PteTrial(1, "top-1", keep("a")), PteTrial(2, "top-2", keep("a", "b"), size_over_cap=True)
    assert _over_cap_subset([fits, over], keep("a", "b", "c")) is over
    assert _over_cap_subset([fits, over], keep("a", "c")) is None  # not a superset: it may be smaller
    assert _over_cap_subset([fits], keep("a", "b")) is None  # nothing was over the cap
    assert _over_cap_subset([over], keep("a", "b", "c", fp16=False)) is None  # another scheme, other sizes
