"""The SELECT phase inside the pipeline: what ships passes through the target's stages, and a recipe gives the same
bytes from ``edgeq export`` and ``edgeq sweep``."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

import edgeq
from edgeq.executorch.layout import read_layout

FIX = Path(__file__).resolve().parents[1] / "fixture_models.py"


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_android_search_ships_a_16k_aligned_pte_described_by_its_own_record(tmp_path: Path,
                                                                            outlier_data: Path) -> None:
    """The first INT8 .pte misses the budget; the searched program that ships keeps the target's 16 KB layout, and
    its details, the alignment check and the budget check all describe it (was: lowered without the config)."""
    res = edgeq.export(f"{FIX}:outlier_mlp", calib=str(outlier_data), output=tmp_path / "out", formats=("pte",),
                       target="android-arm64", budget={"min_cosine": 0.999}, outliers="off", validate_on=("host",))
    s = res.manifest["search_pte"]
    assert s["met"] and len(s["trials"]) >= 2 and not s["trials"][0]["passed"]
    art = res.artifact("pte-int8-static")
    assert art.quantization["search"]["trial"] == s["trials"][-1]["index"]
    expected = {"extract_delegate_segments": True, "segment_alignment": 16384}
    assert art.details["backend_config"] == expected and art.quantization["backend_config"] == expected
    lay = read_layout(tmp_path / "out" / art.path)
    assert lay.segments and not lay.misaligned(16384) and lay.inline_delegates == 0
    align = next(p for p in res.manifest["passes"] if p["name"] == "executorch-alignment")
    row = next(r for r in align["details"]["artifacts"] if r["artifact"] == art.name)
    assert row["aligned"] and not align["failures"]
    assert art.details["delegation"]  # the shipped program's own delegation report, from its lowering
    assert s["selection"]["shipped"].startswith(f"trial {s['trials'][-1]['index']}")
    budget_row = next(p for p in res.manifest["passes"] if p["name"] == "budget-check")
    assert art.name in json.dumps(budget_row) and str(art.bytes) in json.dumps(budget_row)
    assert res.passed


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_export_and_sweep_write_the_same_bytes_for_the_same_recipe(tmp_path: Path) -> None:
    """``edgeq export --calibration percentile`` and the sweep's percentile row are one build path."""
    from edgeq.zoo.digits import write_digits_data

    calib, _ = write_digits_data(tmp_path)
    model = "edgeq.zoo.digits:digits_cnn"
    exported = edgeq.export(model, calib=str(calib), output=tmp_path / "exp", formats=("onnx",),
                            quant=edgeq.QuantOptions(calibration="percentile"),
                            search=edgeq.SearchOptions(mode="off"), validate_on=("host",), outliers="off")
    from edgeq.config import PipelineConfig
    from edgeq.sweep import run_sweep

    m = run_sweep(PipelineConfig(model=model, calib=str(calib), output=tmp_path / "sw", validate_on=("host",),
                                 outliers="off"))
    row = next(v for v in m["sweep"]["variants"] if v["name"] == "onnx-int8-static-percentile")
    assert filecmp.cmp(exported.output / "model.int8.onnx", tmp_path / "sw" / row["path"], shallow=False)
    # and both record that one recipe, in the one format the manifest reads back (edgeq.recipe.Recipe)
    variant = next(a for a in m["artifacts"] if a["path"] == row["path"])
    assert variant["quantization"]["recipe"] == exported.artifact("onnx-int8-static").quantization["recipe"]
    assert row["size_ratio"] is not None and m["sweep"]["pick"] in {v["name"] for v in m["sweep"]["variants"]} | {None}
