"""Where the error comes from, end to end: the trained digits CNN (real digits, real weights) exported to both
formats under a budget its INT8 misses; the per-layer error names the worst layers, and rebuilding with the
top-named layer wider measurably improves the output; ``edgeq explain`` prints the same from the folder alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edgeq
from edgeq.errors import ManifestError
from edgeq.explain.section import best_moves
from edgeq.explain.view import explain
from edgeq.report.html import render_html

pytestmark = pytest.mark.slow
DIGITS_MODEL = "edgeq.zoo.digits:digits_cnn"


@pytest.fixture(scope="module")
def missed(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]) -> edgeq.ExportResult:
    calib, ev = digits_small
    return edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), formats=("onnx", "pte"), max_eval_samples=64,
                        budget={"min_sqnr": 60.0}, search=edgeq.SearchOptions(mode="off"),
                        output=tmp_path_factory.mktemp("explain") / "digits")


def _record(res: edgeq.ExportResult, fmt: str) -> dict[str, Any]:
    return next(r for r in res.manifest["explain"]["layer_error"] if r["format"] == fmt)


@pytest.mark.parametrize("fmt", ["onnx", "pte"])
def test_worst_layers_named_and_widening_the_top_one_helps(missed: edgeq.ExportResult, fmt: str) -> None:
    assert not missed.passed  # INT8 misses a 60 dB SQNR budget: the moves are measured
    rec = _record(missed, fmt)
    names = [ly["layer"] for ly in rec["layers"]]
    assert len(names) >= 4 and rec["samples"] == 8
    assert all(ly["cosine"] is not None and ly["cosine"] <= 1.0 + 1e-9 for ly in rec["layers"])
    top = rec["worst"][0]
    assert top["rank"] == 1 and top["layer"] in names
    # each layer's output cost measured with it quantized alone, and the ranking follows it
    assert rec["ranking"] == "alone"
    measured = [ly for ly in rec["layers"] if ly["alone_db"] is not None]
    assert len(measured) >= 3 and (fmt == "pte" or len(measured) == len(rec["layers"]))
    assert fmt == "onnx" or all(ly["op"] not in ("relu", "max_pool2d") for ly in measured)  # they share a grid
    assert top["alone_db"] == min(ly["alone_db"] for ly in measured)
    # the done-when: widening the top-named layer measurably improves the model, sample by sample
    top_moves = [m for m in rec["moves"] if m["layer"] == top["layer"]]
    assert max(m["gain_db"] for m in top_moves) > 0, top_moves
    assert max(m["samples_better"] for m in top_moves) > top_moves[0]["samples"] // 2, top_moves
    assert {m["layer"] for m in rec["moves"]} == {w["layer"] for w in rec["worst"]}  # each named layer rebuilt
    best = best_moves(rec)  # widening a named layer measurably improves the output
    assert best and best[0]["gain_db"] > 0 and best[0]["after_db"] > best[0]["base_db"], rec["moves"]
    # paired, sample by sample: the gain holds on most of the samples the rebuilt models ran on
    assert best[0]["samples"] >= 8 and best[0]["samples_better"] > best[0]["samples"] // 2, best[0]
    section = render_html(missed.manifest).split("Where the error comes from", 1)[1].split("<h2>", 1)[0]
    for w in rec["worst"]:
        assert w["layer"] in section
    assert "dB measured" in section and f"on <code>{best[0]['layer']}</code>" in section
    assert f"closer to float on {best[0]['samples_better']} of {best[0]['samples']} samples" in section


def test_explain_command_reads_the_folder(missed: edgeq.ExportResult) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(edgeq.__file__).parent.parent)}
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "explain", str(missed.output), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["command"] == "explain" and doc["passed"] is False
    assert {le["format"] for le in doc["layer_error"]} == {"onnx", "pte"}
    assert {p["artifact"] for p in doc["profiles"]} >= {"onnx-int8-static", "pte-int8-static"}
    top = _record(missed, "pte")["worst"][0]["layer"]
    assert f"worst #1: {top}" in r.stderr and "dB measured" in r.stderr and "best measured move" in r.stderr  # the human text goes to stderr with --json


def test_explain_refuses_a_manifest_from_outside_the_folder(missed: edgeq.ExportResult, tmp_path: Path) -> None:
    (tmp_path / "edgeq.json").symlink_to(missed.output / "edgeq.json")
    with pytest.raises(ManifestError, match="symlink"):
        explain(tmp_path)
    assert explain(missed.output)["layer_error"]
