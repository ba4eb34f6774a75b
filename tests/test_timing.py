"""The manifest's ``timing`` section (edgeq.timing): each phase of a real export with its seconds, what the
preparation and the searches bought, and the same rows in report.md, report.html and the terminal summary."""

from __future__ import annotations

from edgeq.jsontypes import JSONObject
from edgeq.report.markdown import terminal_summary
from edgeq.timing import PhaseClock, search_gain, timing_rows


def test_export_records_where_its_time_went(digits_export) -> None:  # type: ignore[no-untyped-def]
    m = digits_export.manifest
    phases = [p["phase"] for p in m["timing"]["phases"]]
    assert phases == ["capture + preparation", "build onnx", "search onnx", "artifact stages onnx", "validate",
                      "explain"]
    seconds = [p["seconds"] for p in m["timing"]["phases"]]
    assert all(s >= 0 for s in seconds) and sum(seconds) <= m["timing"]["total_s"] + 0.05
    assert seconds[0] > 0 and seconds[4] > 0  # capture and validation do real work on any machine
    md = (digits_export.output / "report.md").read_text()
    assert "## Where the time went" in md and "| validate |" in md
    assert "Where the time went" in (digits_export.output / "report.html").read_text()
    assert any(line.startswith("time: ") for line in terminal_summary(m, "out").splitlines())
    assert [r[0] for r in timing_rows(m)] == phases


def _search(best: int | None) -> JSONObject:
    trials: list[JSONObject] = [{"index": i, "metrics": {"top1_agreement": a, "cosine_mean": 0.99}}
                                for i, a in enumerate((0.8375, 0.9, 0.935))]
    return {"met": best is not None, "best": best, "trials": trials}


def test_search_gain_names_the_shipped_trial_against_the_first_in_the_budgets_metric() -> None:
    cnn: JSONObject = {"min_top1_agreement": 0.92, "min_cosine": None}
    assert search_gain(_search(2), cnn) == "top-1 agreement 0.8375 -> 0.9350 (trial 2 of 3)"
    assert search_gain(_search(None), cnn) == "3 trial(s), none met the budget: the first INT8 model ships"
    # a missed budget: the ONNX record still names its best-scoring trial, which did not ship
    assert search_gain({**_search(2), "met": False}, cnn) == "3 trial(s), none met the budget: the first INT8 model ships"
    # an encoder's budget: its top-1 "agreement" (an embedding's argmax) is never the one shown
    encoder: JSONObject = {"min_cosine": 0.99, "min_nn_agreement": None}
    cos_only: JSONObject = {"met": True, "best": 1, "trials": [{"index": 0, "metrics": {"cosine_mean": 0.98, "top1_agreement": 0.5}},
                                                  {"index": 1, "metrics": {"cosine_mean": 0.995, "top1_agreement": 0.6}}]}
    assert search_gain(cos_only, encoder) == "cosine 0.98000 -> 0.99500 (trial 1 of 2)"
    assert search_gain(None, cnn) is None and search_gain({"trials": []}, cnn) is None


def test_preparation_row_says_what_the_preparation_did() -> None:
    clock = PhaseClock()
    with clock.phase("capture + preparation"):
        pass
    manifest: JSONObject = {"outliers": {"seconds": {"prepare": 9.14, "sensitivity": 1.0},
                                         "rounding": {"mode": "auto", "picked": "gptq"}}}
    row = clock.record(manifest)["phases"][0]  # type: ignore[index]
    assert row["bought"] == "outlier-aware preparation 9.1 s (gptq weight rounding)"  # type: ignore[index]
    assert "bought" not in clock.record({})["phases"][0]  # type: ignore[index,operator]  # nothing prepared
