"""The one verdict function and the one evaluator interface (no model: measured values built by hand).

The tensor export's verdict (``edgeq.validate.orchestrate.verdict``) and the text-generation export's
(``edgeq.llm.measure.verdict``) both compose through :func:`edgeq.select.verdict.verdict`: the dicts below are
the ones the manifests held before that function existed, string for string."""

from __future__ import annotations

import math

import numpy as np

from edgeq.config import Budget
from edgeq.llm.measure import verdict as llm_verdict
from edgeq.manifest import Artifact, Validation
from edgeq.select.evaluation import Evaluation, evaluate_perplexity, evaluate_tensor
from edgeq.select.verdict import ArtifactCheck, verdict
from edgeq.validate.metrics import Metrics, check_budget, compare
from edgeq.validate.orchestrate import verdict as tensor_verdict


def _metrics(cosine: float) -> Metrics:
    return Metrics(samples=8, cosine_mean=cosine, cosine_min=cosine - 0.01, sqnr_db=30.0, max_abs_diff=0.1)


def _artifact(name: str, cosine: float, runner: str = "host", emulated: bool = False) -> Artifact:
    m = _metrics(cosine)
    bc = check_budget(m, Budget(min_cosine=0.99))
    return Artifact(name, f"{name}.onnx", "onnx", "int8-static", "candidate",
                    validations=(Validation(runner, "aarch64" if emulated else "x86_64", "cortex-a76" if emulated
                                            else "cpu", [], emulated, m.to_dict(), bc.to_dict(), None, runner,
                                            "ort"),))


def test_tensor_verdict_is_the_dict_it_always_was() -> None:
    arts = [_artifact("model-int8", 0.95), _artifact("model-arm", 0.98, runner="qemu", emulated=True),
            _artifact("model-ok", 0.999)]
    passes = [{"name": "alignment", "failures": ["segment 2 is not 16384-aligned"]}]
    v = tensor_verdict(arts, passes)
    assert {k: v[k] for k in ("passed", "failures")} == {"passed": False, "failures": [
        "model-int8 on host: mean cosine 0.95000 < 0.99",
        "model-arm on qemu (cortex-a76): mean cosine 0.98000 < 0.99",
        "pass alignment: segment 2 is not 16384-aligned"]}
    assert list(v) == ["passed", "failures", "host_passes_arm_fails", "notes", "int8_regressions"]
    assert tensor_verdict([_artifact("model-ok", 0.999)], [])["passed"]
    assert tensor_verdict([], [])["failures"] == ["no artifact was validated (no runner supports the produced formats)"]


def test_llm_verdict_is_the_dict_it_always_was() -> None:
    def art(name: str, failures: list[str], emulated: bool = False) -> dict[str, object]:
        return {"name": name, "validations": [{"emulated": emulated,
                                               "budget_check": {"passed": not failures, "failures": failures}}]}

    arts = [art("onnx-a", ["perplexity x1.1110 > x1.1000"]), art("pte-b", []), art("pte-c", [], emulated=True),
            {"name": "pte-d", "validations": [{"emulated": False, "budget_check": {"passed": False}}]}]
    v = llm_verdict({"onnx": {"met": True}, "pte": {"met": False}}, arts, 1.1,  # type: ignore[arg-type]
                    [{"name": "storage", "failures": ["pte-b is 900.0 MB, over the storage budget"]}])
    assert v == {"passed": False, "failures": [
        "pte: no variant inside x1.100 float perplexity",
        "onnx-a: perplexity x1.1110 > x1.1000 on the eval windows",
        "pte-d: budget missed on the eval windows",
        "pte-b is 900.0 MB, over the storage budget"]}


def test_the_verdict_orders_unmet_checks_stages_then_none_checked() -> None:
    checks = [ArtifactCheck("a on host", False, ("x", "y")), ArtifactCheck("b on host", True)]
    v = verdict(checks, before=["fmt: nothing met"], after=["pass p: z"], none_checked="never")
    assert v.to_dict() == {"passed": False, "failures": ["fmt: nothing met", "a on host: x", "a on host: y",
                                                         "pass p: z"]}
    assert verdict([], none_checked="no artifact").failures == ("no artifact",)
    infra = verdict([], none_checked="no artifact", infra=["2 of 3 boards did not answer"])
    assert not infra.passed and infra.failures == ()  # boards missing: not a budget failure, still not a pass
    assert verdict([ArtifactCheck("b", True)]).to_dict() == {"passed": True, "failures": []}
    assert verdict([ArtifactCheck("c on host", False)]).failures == ("c on host: budget missed",)  # never silent


def test_evaluate_tensor_under_and_over_the_size_cap() -> None:
    ref = np.random.default_rng(0).normal(size=(16, 4))
    m = compare({"o": ref}, {"o": ref * 1.001})
    budget = Budget(min_cosine=0.99)
    under: Evaluation = evaluate_tensor(m, budget, size_ratio=0.25, cap=0.3)
    assert under.passed and under.failures == () and under.shortfall == 0.0
    assert dict(under.distance) == {"cosine_mean": round(m.cosine_mean - 0.99, 6), "size_ratio": 0.05}
    assert under.metrics == m.to_dict()
    over = evaluate_tensor(m, budget, size_ratio=0.35, cap=0.3)
    assert not over.passed and over.size_over_cap and over.failures == ("size 0.350× float > 0.3×",)
    assert math.isclose(over.shortfall, 0.5) and math.isclose(over.distance["size_ratio"], -0.05)
    missed = evaluate_tensor(_metrics(0.95), budget)  # no cap: no size row at all
    assert missed.failures == ("mean cosine 0.95000 < 0.99",) and "size_ratio" not in missed.distance
    assert math.isclose(missed.shortfall, 4.0) and not missed.size_over_cap


def test_evaluate_perplexity_under_and_over_the_limit() -> None:
    met = {"ppl": 12.0, "ppl_ratio": 1.05, "ppl_ratio_upper": 1.12, "top1_agreement": 0.9}
    inside: Evaluation = evaluate_perplexity(met, 1.1)
    assert inside.passed and inside.failures == () and inside.shortfall == 0.0
    assert dict(inside.distance) == {"ppl_ratio": 0.05} and inside.metrics == met
    # the ladder judges on the confidence bound: the same measurement misses there
    bound = evaluate_perplexity(met, 1.1, "ppl_ratio_upper")
    assert not bound.passed and math.isclose(bound.shortfall, 0.2) and bound.distance == {"ppl_ratio_upper": -0.02}
    over = evaluate_perplexity({**met, "ppl_ratio": 1.111}, 1.1)
    assert over.failures == ("perplexity x1.1110 > x1.1000",)  # the budget_check string the manifest records
