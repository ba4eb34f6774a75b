"""Host latency of float vs INT8 is one paired measurement (interleaved rounds, one thread, medians).

No timing is asserted: only that the measurement ran the way the manifest says it did and that reports use it.
"""

from __future__ import annotations

import pytest

from edgeq.manifest import Artifact
from edgeq.report.rows import rows
from edgeq.validate.latency import PairedTiming, paired_latency


def test_paired_latency_interleaves_and_reports_medians() -> None:
    calls: list[str] = []
    runs = {"float": lambda: calls.append("float"), "int8": lambda: calls.append("int8")}
    timing = PairedTiming(warmup=1, max_rounds=6, min_rounds=3, round_seconds=1e-9)
    res = paired_latency(runs, "float", timing)
    assert set(res) == {"float", "int8"}
    assert res["float"]["ratio_to_float"] == 1.0
    r = res["int8"]
    assert 3 <= r["rounds"] <= 6 and r["method"] == "paired" and r["threads"] == 1 and r["latency_ms"] >= 0
    timed = calls[2 * (timing.warmup + 1):]  # after warm-up and the one-run estimate of each
    assert timed == ["float", "int8"] * r["rounds"]  # round by round, never all of one model first


def test_unknown_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="baseline"):
        paired_latency({"a": lambda: None}, "b")


def test_export_records_the_paired_host_latency(digits_export) -> None:  # type: ignore[no-untyped-def]
    m = digits_export.manifest
    arts = {a["name"]: a for a in m["artifacts"]}
    for name in ("onnx-fp32", "onnx-int8-static"):
        host = [v for v in arts[name]["validations"] if v["runner"] == "host"]
        assert host, name
        detail = host[0]["latency_detail"]
        assert detail["method"] == "paired" and detail["threads"] == 1 and detail["rounds"] >= 5
        assert host[0]["latency_ms"] == detail["latency_ms"]
    row = next(r for r in rows(m) if r.artifact == "onnx-int8-static" and r.runner == "host")
    q = next(v for v in arts["onnx-int8-static"]["validations"] if v["runner"] == "host")
    assert row.latency_ratio == q["latency_detail"]["ratio_to_float"] and "interleaved" in row.latency_how


def test_manifests_without_the_detail_still_load() -> None:
    v = {"runner": "host", "machine": "x86_64", "cpu_model": "c", "features": [], "emulated": False, "metrics": {},
         "budget_check": {"passed": True, "failures": []}, "latency_ms": 1.0, "latency_kind": "host", "runtime": "ort"}
    art = Artifact.from_dict({"name": "a", "path": "a.onnx", "format": "onnx", "precision": "fp32",
                              "role": "baseline", "validations": [v]})
    assert art.validations[0].latency_detail is None
