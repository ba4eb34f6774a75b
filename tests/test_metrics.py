"""Metrics on arrays with known answers, and the budget check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeq.config import Budget
from edgeq.errors import RunnerError, UsageError
from edgeq.validate.metrics import check_budget, compare, cosine_per_sample, sqnr_db


def test_identical_outputs_are_perfect() -> None:
    ref = {"out": np.random.default_rng(0).normal(size=(20, 10)).astype(np.float32)}
    m = compare(ref, {"out": ref["out"].copy()}, labels=ref["out"].argmax(1))
    assert m.cosine_mean == pytest.approx(1.0) and m.cosine_min == pytest.approx(1.0)
    assert math.isinf(m.sqnr_db) and m.max_abs_diff == 0.0
    assert m.top1_agreement == 1.0 and m.accuracy == 1.0 and m.accuracy_drop_pts == 0.0


def test_known_values() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = np.array([[1.0, 1.0], [0.0, 1.0]])
    cos = cosine_per_sample(ref, out)
    assert cos[0] == pytest.approx(1 / math.sqrt(2)) and cos[1] == pytest.approx(1.0)
    # signal 2, noise 1 -> 10*log10(2)
    assert sqnr_db(ref, out) == pytest.approx(10 * math.log10(2))
    m = compare({"o": ref}, {"o": out}, labels=np.array([0, 1]))
    # argmax of [1, 1] is 0 -> both agree; accuracy unchanged
    assert m.top1_agreement == 1.0 and m.max_abs_diff == 1.0


def test_accuracy_drop_in_points() -> None:
    ref = np.eye(4)
    out = np.eye(4)[[0, 1, 2, 0]]  # last sample flips
    m = compare({"o": ref}, {"o": out}, labels=np.arange(4))
    assert m.reference_accuracy == 1.0 and m.accuracy == 0.75
    assert m.accuracy_drop_pts == pytest.approx(25.0)
    bc = check_budget(m, Budget(max_accuracy_drop=10))
    assert not bc.passed and "accuracy drop 25.00 pt > 10 pt" in bc.failures[0]
    assert check_budget(m, Budget(max_accuracy_drop=30)).passed


def test_budget_reports_every_violation() -> None:
    ref = {"o": np.ones((3, 5))}
    out = {"o": np.ones((3, 5)) * 1.5 + np.random.default_rng(1).normal(size=(3, 5))}
    m = compare(ref, out)
    bc = check_budget(m, Budget(min_cosine=0.9999, min_sqnr=60))
    assert not bc.passed and len(bc.failures) == 2
    assert any("SQNR" in f for f in bc.failures) and any("cosine" in f for f in bc.failures)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(RunnerError, match="shape"):
        compare({"o": np.ones((3, 5))}, {"o": np.ones((3, 4))})
    with pytest.raises(RunnerError, match="lack"):
        compare({"o": np.ones((3, 5))}, {"p": np.ones((3, 5))})


@pytest.mark.parametrize("kwargs", [dict(max_accuracy_drop=-1), dict(min_cosine=1.5), dict(min_sqnr=math.nan),
                                    dict(min_top1_agreement=2)])
def test_invalid_budget_values(kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        Budget(**kwargs)


def test_nearest_neighbour_agreement_for_embeddings() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 16))
    m = compare({"emb": ref}, {"emb": ref + rng.normal(scale=1e-3, size=ref.shape)})
    assert m.nn_agreement == 1.0
    m = compare({"emb": ref}, {"emb": rng.normal(size=ref.shape)})
    assert m.nn_agreement is not None and m.nn_agreement < 0.3


def test_accuracy_budget_without_labels_falls_back_to_top1_agreement_and_says_so() -> None:
    ref = np.eye(4)
    m = compare({"o": ref}, {"o": ref[[1, 0, 2, 3]]})  # two argmax flips, no labels
    assert m.accuracy_drop_pts is None and m.top1_agreement == 0.5
    bc = check_budget(m, Budget(max_accuracy_drop=1.0))
    assert not bc.passed and "top-1 disagreement 50.00 pt > 1 pt" in bc.failures[0]
    assert "no labels" in bc.notes[0]
    ok = compare({"o": ref}, {"o": ref * 0.9})
    bc = check_budget(ok, Budget(max_accuracy_drop=1.0))
    assert bc.passed and "checked as top-1 agreement" in bc.notes[0]
    assert not check_budget(m, Budget(min_top1_agreement=0.9)).passed


def test_accuracy_budget_that_cannot_be_checked_is_named_in_the_verdict() -> None:
    from edgeq.manifest import Artifact, Validation
    from edgeq.validate.orchestrate import verdict

    ref = np.linspace(0, 1, 12).reshape(12, 1)  # one output per sample: no class scores, no labels
    m = compare({"o": ref}, {"o": ref})
    bc = check_budget(m, Budget(max_accuracy_drop=1.0))
    assert bc.passed and bc.notes[0].startswith("not checked")
    art = Artifact("a", "a.onnx", "onnx", "int8-static", "candidate",
                   validations=(Validation("host", "x86_64", "cpu", [], False, m.to_dict(), bc.to_dict(), None,
                                           "host", "ort"),))
    assert verdict([art], [])["notes"] == ["not checked: accuracy drop"]
