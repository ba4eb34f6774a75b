"""Per-layer error for each search trial, not only the model that ships: the trained digits CNN (real digits, real
weights) exported to both formats under a budget no INT8 model meets, so both searches run their moves; explain
rebuilds every built trial from the recipe its record holds and measures it layer by layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edgeq
from edgeq.recipe import Recipe
from edgeq.report.html import render_html

pytestmark = pytest.mark.slow
SEARCH_KEYS = {"onnx": "search", "pte": "search_pte"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]) -> edgeq.ExportResult:
    calib, ev = digits_small
    return edgeq.export("edgeq.zoo.digits:digits_cnn", calib=str(calib), eval=str(ev), formats=("onnx", "pte"),
                        max_eval_samples=64, budget={"min_sqnr": 60.0},
                        search=edgeq.SearchOptions(max_trials=3),
                        output=tmp_path_factory.mktemp("explain-trials") / "digits")


def _trials(res: edgeq.ExportResult, fmt: str) -> dict[int, dict[str, Any]]:
    return {r["trial"]: r for r in res.manifest["explain"]["trial_layer_error"] if r["format"] == fmt}


def _sqnr(rec: dict[str, Any]) -> dict[str, float]:
    return {ly["layer"]: ly["sqnr_db"] for ly in rec["layers"]}


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_every_built_trial_has_its_per_layer_error(searched: edgeq.ExportResult, fmt: str) -> None:
    assert not searched.passed  # nothing meets 60 dB: every planned move is built and measured
    search = searched.manifest[SEARCH_KEYS[fmt]]
    built = [t for t in search["trials"] if t["error"] is None and t["metrics"]]
    assert len(built) >= 2
    recs = _trials(searched, fmt)
    assert sorted(recs) == [t["index"] for t in built]  # one record per built trial, none for the rest
    shipped = next(r for r in searched.manifest["explain"]["layer_error"] if r["format"] == fmt)
    for t in built:
        rec = recs[t["index"]]
        Recipe.from_dict(t["recipe"])  # each trial records what it was built from
        assert rec["label"] == t["label"] and rec["passed"] is False and len(rec["layers"]) >= 4
        # the same float graph's layers (a conv kept float no longer has its ReLU folded in: one more layer)
        shipped_names = {ly["layer"] for ly in shipped["layers"]}
        assert len(set(_sqnr(rec)) & shipped_names) >= len(shipped_names) // 2
        assert all(-1.0 <= ly["cosine"] <= 1.0 + 1e-9 for ly in rec["layers"])
        assert rec["lowest"]["sqnr_db"] == min(_sqnr(rec).values()) and 1 <= len(rec["worst"]) <= 3
    # the moves change the model, and the per-layer error sees it: no two trials measure the same
    assert len({tuple(sorted(_sqnr(r).items())) for r in recs.values()}) == len(recs)


def test_the_reused_first_model_measures_as_the_shipped_one(searched: edgeq.ExportResult) -> None:
    """The ONNX search's first trial is the export's first model (not rebuilt); explain rebuilds it from its
    recorded recipe, and on the same samples it measures layer for layer what the shipped model measures."""
    first = searched.manifest["search"]["trials"][0]
    assert first["reused_first_model"] and first["recipe"] == searched.artifact("onnx-int8-static").quantization["recipe"]
    shipped = next(r for r in searched.manifest["explain"]["layer_error"] if r["format"] == "onnx")
    trial = _trials(searched, "onnx")[first["index"]]
    assert _sqnr(trial) == {ly["layer"]: round(ly["sqnr_db"], 2) for ly in shipped["layers"]}


def test_report_and_explain_show_each_trial(searched: edgeq.ExportResult) -> None:
    section = render_html(searched.manifest).split("in each search trial", 1)[1].split("<h2>", 1)[0]
    recs = searched.manifest["explain"]["trial_layer_error"]
    assert section.count("class='trial-line'") == len(recs)  # one line per trial in the plot
    for r in recs:
        assert r["lowest"]["layer"] in section and r["label"] in section
    env = {**os.environ, "PYTHONPATH": str(Path(edgeq.__file__).parent.parent)}
    p = subprocess.run([sys.executable, "-m", "edgeq.cli", "explain", str(searched.output), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["trial_layer_error"] == recs
    for r in recs:
        assert f"{r['format']} trial {r['trial']} ({r['label']})" in p.stderr
