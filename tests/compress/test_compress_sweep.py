"""The compression sweep: ladder parsing, the pick, the Pareto front, and one small real sweep (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeq.compress.spec import ClusterConfig, PruneConfig
from edgeq.compress.sweep import DEFAULT_LADDERS, pareto, parse_ladders, pick
from edgeq.errors import UsageError

TINY = Path(__file__).resolve().parent / "tiny_models.py"


def test_parse_ladders() -> None:
    lad = parse_ladders("prune:0.1:0.2,cluster:256:16,lowrank")
    assert lad["prune"] == (PruneConfig(0.1), PruneConfig(0.2))
    assert lad["cluster"] == (ClusterConfig(256), ClusterConfig(16))
    assert len(lad["lowrank"]) == len(DEFAULT_LADDERS["lowrank"])
    for bad, named in [("prune:2", "prune:2"), ("zip", "zip"), ("prune,prune", "twice")]:
        with pytest.raises(UsageError, match=named):
            parse_ladders(bad)


def _r(name: str, b: int, ms: float, acc: float, ok: bool = True) -> dict:
    return {"name": name, "bytes": b, "latency_ms": ms, "accuracy": acc, "passed": ok}


def test_pick_smallest_inside_budget_ties_to_the_earliest_never_the_faster() -> None:
    # latency never decides (it moves by a third on a loaded host): the same rows pick the same variant anywhere
    rows = [_r("int8", 100, 1.0, 0.97), _r("a", 50, 0.9, 0.96), _r("b", 50, 0.5, 0.965), _r("c", 10, 0.1, 0.5, False)]
    assert pick(rows) == "a"
    assert pick([_r("x", 1, 1, 0, False)]) is None


def test_pareto_drops_dominated() -> None:
    rows = [_r("int8", 100, 1.0, 0.97), _r("a", 50, 0.9, 0.96), _r("worse", 60, 1.0, 0.95), _r("c", 10, 0.1, 0.5)]
    assert set(pareto(rows, "accuracy")) == {"int8", "a", "c"}


@pytest.mark.slow
def test_sweep_runs_ladders_and_stops_outside_budget(tmp_path: Path, digits_npz: Path) -> None:
    from edgeq.compress.spec import CompressOptions, TrainOptions
    from edgeq.compress.sweep import run_compress_sweep
    from edgeq.config import Budget, PipelineConfig, SearchOptions

    cfg = PipelineConfig(model=f"{TINY}:tiny_cnn", calib=str(digits_npz), output=tmp_path / "sw",
                         budget=Budget(min_sqnr=200.0),
                         search=SearchOptions(mode="off"), validate_on=("host",), max_eval_samples=64,
                         compress=CompressOptions((), TrainOptions(steps=2, batch_size=16)))
    s = run_compress_sweep(cfg, parse_ladders("prune:0.5:0.7:0.9"), workers=2)
    names = [r["name"] for r in s["variants"]]
    # no INT8 model reaches 200 dB SQNR: the ladder must stop at its first rung
    assert names == ["int8", "prune-0.5"]
    assert not s["variants"][1]["passed"] and s["variants"][1]["bytes"] < s["variants"][0]["bytes"]
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["variants"][0]["name"] == "int8"
    assert "<svg" in (tmp_path / "sw" / "report.html").read_text()
