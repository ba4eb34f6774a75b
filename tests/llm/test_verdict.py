"""The LM export's verdict: a pick chosen on the calibration windows that misses the budget on the eval windows
(what ``edgeq check`` re-measures) fails the export too, so export and check agree."""

from __future__ import annotations

from typing import Any

from edgeq.llm.measure import verdict


def _artifact(name: str, ratio: float, limit: float, emulated: bool = False) -> dict[str, Any]:
    ok = ratio <= limit
    return {"name": name, "validations": [{"emulated": emulated, "budget_check": {
        "passed": ok, "failures": [] if ok else [f"perplexity x{ratio:.4f} > x{limit:.4f}"]}}]}


def test_eval_window_miss_of_a_calibration_pick_fails_the_verdict() -> None:
    formats = {"onnx": {"met": True}, "pte": {"met": True}}
    good = [_artifact("onnx-a", 1.05, 1.1), _artifact("pte-b", 1.01, 1.1)]
    assert verdict(formats, good, 1.1) == {"passed": True, "failures": []}
    # SmolLM2-135M, int4 k-quant pick: x1.075 on the calibration windows, x1.111 on the eval windows
    v = verdict(formats, [_artifact("onnx-a", 1.111, 1.1), good[1]], 1.1)
    assert not v["passed"] and v["failures"] == ["onnx-a: perplexity x1.1110 > x1.1000 on the eval windows"]


def test_no_variant_and_emulated_rows() -> None:
    v = verdict({"pte": {"met": False}}, [], 1.1)
    assert not v["passed"] and "no variant inside x1.100" in v["failures"][0]
    speed_only = {"name": "pte-b", "validations": [{"emulated": True, "budget_check": {"passed": True}}]}
    assert verdict({"pte": {"met": True}}, [speed_only], 1.1)["passed"]
