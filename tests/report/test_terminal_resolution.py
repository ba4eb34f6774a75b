"""The eval-set resolution warning: a budget one sample can swing is flagged with the sample count that resolves
it; a 0 pt accuracy-drop budget (no lost sample allowed) is exact at any size and gets no warning (it used to
divide by zero and crash the export's summary)."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject
from edgeq.report.terminal import resolution_warnings


def _manifest(drop_budget: float, samples: int, drop: float) -> JSONObject:
    validation = {"runner": "host", "metrics": {"accuracy_drop_pts": drop, "reference_accuracy": 0.9}}
    return {"budget": {"max_accuracy_drop": drop_budget},
            "validation_data": {"samples": samples, "has_labels": True},
            "artifacts": [{"name": "onnx-int8-static", "role": "candidate", "validations": [validation]}]}


def test_a_budget_one_sample_can_swing_names_the_samples_that_resolve_it() -> None:
    (w,) = resolution_warnings(_manifest(1.0, 50, 0.5))
    assert "50 samples, one sample = 2.00 pt > half the 1 pt budget" in w
    assert "≥ 200 samples" in w


def test_enough_samples_no_warning() -> None:
    assert resolution_warnings(_manifest(1.0, 400, 0.5)) == []


def test_a_zero_drop_budget_is_exact_and_not_flagged() -> None:
    assert resolution_warnings(_manifest(0.0, 50, 0.0)) == []
