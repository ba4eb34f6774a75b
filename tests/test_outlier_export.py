"""Outlier-aware PTQ wired into ``edgeq export``: prepared once in torch, recorded, used by every format's INT8
model, searched with dynamic / mixed-precision moves; the float artifacts and the reference stay the user's model.

The model is :func:`tests.fixture_models.tiny_encoder` (2-layer post-norm encoder, 1200-row token table,
planted LayerNorm outlier channels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.config import Budget, PipelineConfig, SearchOptions
from edgeq.validate.metrics import Metrics, check_budget

MODEL = "tests.fixture_models:tiny_encoder"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("enc")
    ids = np.random.default_rng(0).integers(0, 1200, (96, 16)).astype(np.int64)
    np.savez(d / "calib.npz", input_ids=ids[:64])
    np.savez(d / "eval.npz", input_ids=ids[64:])
    return d / "calib.npz", d / "eval.npz"


def _metrics(nn: float | None) -> Metrics:
    return Metrics(samples=32, cosine_mean=0.999, cosine_min=0.99, sqnr_db=30.0, max_abs_diff=0.1, nn_agreement=nn)


def test_nn_agreement_is_a_budget() -> None:
    b = Budget(min_nn_agreement=0.95)
    assert check_budget(_metrics(0.96), b).passed
    fail = check_budget(_metrics(0.90), b)
    assert not fail.passed and "nearest-neighbour agreement 0.9000 < 0.95" in fail.failures[0]
    assert not check_budget(_metrics(None), b).passed  # asked for but not measurable: never a silent pass
    # an embedding budget does not inherit the target's classifier default (top-1 agreement of an embedding)
    merged = b.merged_over(Budget(max_accuracy_drop=1.0, min_cosine=0.98))
    assert merged.max_accuracy_drop is None and merged.min_cosine == 0.98
    with pytest.raises(Exception, match="min-nn-agreement"):
        Budget(min_nn_agreement=1.5)


def test_sensitivity_pass_ranks_the_linears_and_prepare_keeps_the_source() -> None:
    import torch

    from edgeq.data import Dataset
    from edgeq.outliers.linear_sim import linear_sensitivity
    from edgeq.prepare import prepare_source
    from edgeq.progress import Progress
    from edgeq.source import load_source

    src = load_source(MODEL)
    ids = np.random.default_rng(1).integers(0, 1200, (16, 16)).astype(np.int64)
    before = {k: v.clone() for k, v in src.module.state_dict().items()}
    prepared, record = prepare_source(src, Dataset({"input_ids": ids}), Progress(False))
    assert prepared.module is not src.module
    assert all(torch.equal(before[k], v) for k, v in src.module.state_dict().items())  # the reference is untouched
    assert "embeddings" in record["applied"] and record["embeddings"][0]["rows"] == 1200
    assert "smoothquant" in record["applied"]
    assert any(e["alpha"] > 0 for e in record["smoothquant"])
    ranking = record["linear_sensitivity"]
    assert ranking and ranking == sorted(ranking, key=lambda r: -r["share"])
    assert linear_sensitivity(prepared.module, {"input_ids": ids})[0].module == ranking[0]["module"]


@pytest.mark.slow
def test_export_onnx_applies_records_and_searches_the_moves(data: tuple[Path, Path], tmp_path: Path) -> None:
    import onnx

    from edgeq.api import export

    calib, ev = data
    cfg = PipelineConfig(model=MODEL, calib=str(calib), eval=str(ev), output=tmp_path / "out",
                         budget=Budget(min_cosine=0.99999, min_nn_agreement=1.0),
                         search=SearchOptions(mode="always", max_trials=3, max_seconds=1e9))
    res = export(cfg)
    m = json.loads((tmp_path / "out" / "edgeq.json").read_text())
    out = m["outliers"]
    assert {"smoothquant", "embeddings"} <= set(out["applied"])
    assert all("alpha" in e and "layers" in e for e in out["smoothquant"])  # per-layer strengths recorded
    # the float artifact is the user's model (float token table); the INT8 one reads an int8 table
    fp32 = onnx.load(str(tmp_path / "out" / "model.fp32.onnx"))
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in fp32.graph.initializer)
    trials = m["search"]["trials"]
    # dynamic predicted to beat static (edgeq.outliers.linear_sim.predict_scheme): no static baseline trial, the
    # per-token dynamic model (the first model's scheme) first, no per-tensor one
    assert out["scheme_prediction"]["pick"]["onnx"] == "dynamic"
    assert [t["stage"] for t in trials] == ["per-token", "mixed-precision", "mixed-precision"]
    assert trials[1]["fp16_linears"] == [out["linear_sensitivity"][0]["module"]] and trials[1]["fp16_nodes"]
    q = res.artifacts[1] if res.artifacts[1].role == "candidate" else res.artifacts[-1]
    assert q.quantization is not None and q.quantization["outlier_prepared"] is True
    # an impossible budget: exit 1 (not passed), the closest trials are listed with their failures
    assert not res.passed and m["search"]["closest"]
    # the time each phase took, next to what it bought (edgeq.timing reads the records written before it)
    bought = {p["phase"]: p.get("bought", "") for p in m["timing"]["phases"]}
    assert bought["capture + preparation"].startswith("outlier-aware preparation")
    assert bought["search onnx"] == "3 trial(s), none met the budget: the first INT8 model ships"


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_outliers_on_and_off(data: tuple[Path, Path], tmp_path: Path) -> None:
    """on: the INT8 ONNX model is built from the prepared copy (an int8 token table), the float one from the
    user's model, the reference too (outputs of the shipped float model match it); off: nothing prepared."""
    import onnx

    from edgeq.api import export
    from edgeq.onnx.mixed import read_module_map

    calib, ev = data
    on = export(PipelineConfig(model=MODEL, calib=str(calib), eval=str(ev), output=tmp_path / "on", outliers="on",
                               search=SearchOptions(mode="off")))
    assert {"smoothquant", "embeddings"} <= set(on.manifest["outliers"]["applied"])
    q = on.artifact("onnx-int8-static")
    assert q.quantization is not None and q.quantization["outlier_prepared"] is True
    int8 = onnx.load(str(tmp_path / "on" / q.path))
    fp32_path = tmp_path / "on" / "model.fp32.onnx"
    fp32 = onnx.load(str(fp32_path))
    has_int8_table = [any(t.data_type == onnx.TensorProto.INT8 and 1200 in t.dims for t in g.graph.initializer)
                      for g in (int8, fp32)]
    assert has_int8_table == [True, False]
    fp = on.artifact("onnx-fp32").validations[0].metrics
    assert fp["cosine_mean"] > 0.99999  # the float artifact is the reference's model, not the prepared one
    assert read_module_map(fp32_path)  # node -> module map for mixed precision by torch module
    off = export(PipelineConfig(model=MODEL, calib=str(calib), eval=str(ev), output=tmp_path / "off",
                                outliers="off", budget=Budget(min_cosine=0.9), search=SearchOptions(mode="off")))
    assert "outliers" not in off.manifest
    art = off.artifact("onnx-int8-static")
    assert art.quantization is not None and art.quantization["outlier_prepared"] is False


@pytest.mark.slow
def test_both_formats_get_the_prepared_model(data: tuple[Path, Path], tmp_path: Path) -> None:
    from edgeq.api import export

    calib, ev = data
    cfg = PipelineConfig(model=MODEL, calib=str(calib), eval=str(ev), output=tmp_path / "out", formats=("onnx", "pte"),
                         outliers="on", budget=Budget(min_cosine=0.9), search=SearchOptions(mode="off"))
    res = export(cfg)
    cands = [a for a in res.artifacts if a.role == "candidate"]
    assert {a.format for a in cands} == {"onnx", "pte"}
    assert all(a.quantization is not None and a.quantization["outlier_prepared"] for a in cands)
    fp32 = {a.format: a.bytes for a in res.artifacts if a.role == "baseline"}
    # the INT8 token table (1200 x 32) is in both INT8 models: each is well under half its float model
    assert all(a.bytes < 0.5 * fp32[a.format] for a in cands)
    assert res.manifest["outliers"]["applied"]
