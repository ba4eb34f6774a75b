"""INT8 artifacts larger or slower than float are reported next to the verdict (they pass accuracy budgets)."""

from __future__ import annotations

from edgeq.manifest import Artifact, Validation
from edgeq.report.markdown import render_markdown
from edgeq.validate.regressions import int8_regressions


def _v(latency: float | None, runner: str = "host") -> Validation:
    return Validation(runner=runner, machine="x86_64", cpu_model="host", features=[], emulated=False, metrics={},
                      budget_check={"passed": True, "failures": []}, latency_ms=latency, latency_kind="median",
                      runtime="ort")


def _arts(int8_bytes: int, int8_ms: float) -> list[Artifact]:
    fp = Artifact("onnx-fp32", "model.fp32.onnx", "onnx", "fp32", "baseline", bytes=1000, validations=(_v(10.0),))
    q = Artifact("onnx-int8-static", "model.int8.onnx", "onnx", "int8-static", "candidate", bytes=int8_bytes,
                 validations=(_v(int8_ms),))
    pte = Artifact("pte-int8-static", "model.int8.pte", "pte", "int8-static", "candidate", bytes=5000,
                   validations=(_v(50.0),))  # no float .pte to compare with: nothing reported
    return [fp, q, pte]


def test_smaller_and_faster_int8_is_quiet() -> None:
    assert int8_regressions(_arts(300, 6.0)) == []


def test_larger_and_slower_int8_is_reported() -> None:
    msgs = int8_regressions(_arts(1200, 12.5))
    assert msgs == ["onnx-int8-static is larger than onnx-fp32: 1.20x the float size",
                    "onnx-int8-static is slower than onnx-fp32 on host: 12.50 ms vs 10.00 ms (1.25x)"]


def test_report_shows_the_warning() -> None:
    m = {"verdict": {"passed": True, "failures": [], "int8_regressions": ["onnx-int8-static is slower than x"]},
         "target": {"name": "x86-64", "cpu": "c", "isa": "i", "abi": "a"},
         "source": {"ref": "m:f", "kind": "factory", "sha256": "0" * 64},
         "validation_data": {"samples": 1, "source": "s", "reference": {"kind": "torch"}}, "budget": {},
         "edgeq_version": "0", "dependencies": {}, "artifacts": [], "passes": []}
    assert "INT8 larger or slower than float" in render_markdown(m)
