"""Search moves ordered by expected gain: the preparation simulates static vs dynamic INT8 activations in torch and,
when dynamic is predicted to win (a transformer), each format's first INT8 model is the dynamic one — no static
model is built or lowered. Convolution nets keep the target's static scheme first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.config import Budget, PipelineConfig, QuantOptions, SearchOptions

ENCODER = "tests.fixture_models:tiny_encoder"
DIGITS = "edgeq.zoo.digits:digits_cnn"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tok")
    ids = np.random.default_rng(0).integers(0, 1200, (96, 16)).astype(np.int64)
    np.savez(d / "calib.npz", input_ids=ids[:64])
    np.savez(d / "eval.npz", input_ids=ids[64:])
    return d / "calib.npz", d / "eval.npz"


def test_encoder_predicts_dynamic_and_the_cnn_static() -> None:
    from edgeq.data import Dataset
    from edgeq.outliers.linear_sim import predict_scheme
    from edgeq.prepare import prepare_source
    from edgeq.progress import Progress
    from edgeq.source import load_source

    ids = np.random.default_rng(1).integers(0, 1200, (16, 16)).astype(np.int64)
    _, record = prepare_source(load_source(ENCODER), Dataset({"input_ids": ids}), Progress(False))
    pred = record["scheme_prediction"]
    assert set(pred["errors"]) == {"static", "dynamic_per_tensor", "dynamic_per_token"}
    assert pred["pick"] == {"onnx": "dynamic", "pte": "dynamic"}
    assert pred["errors"]["dynamic_per_token"] < pred["errors"]["static"]

    # the digits CNN's classifier head outweighs its convolutions, yet it is a CNN: static stays first
    digits = load_source(DIGITS).module
    images = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    cnn = predict_scheme(digits, {"image": images})
    assert cnn.pick == {"onnx": "static", "pte": "static"} and not cnn.errors


def test_first_scheme_follows_the_prediction_only_when_the_search_may_run() -> None:
    from edgeq.export_inputs import first_scheme

    rec = {"scheme_prediction": {"pick": {"onnx": "dynamic", "pte": "static"}}}
    cfg = PipelineConfig(model=ENCODER, calib="x.npz", output=Path("o"), budget=Budget(min_cosine=0.99))
    onnx_q = first_scheme(cfg, rec, "onnx")
    assert onnx_q.mode == "dynamic" and onnx_q.per_channel is True and onnx_q.reduce_range is False
    assert onnx_q.per_token  # the ONNX first dynamic model has one activation scale per token, as the .pte's
    assert first_scheme(cfg, rec, "pte").mode == "static"
    off = PipelineConfig(model=ENCODER, calib="x.npz", output=Path("o"), search=SearchOptions(mode="off"))
    assert first_scheme(off, rec, "onnx").mode == "static"  # --no-search: the scheme asked for
    user = PipelineConfig(model=ENCODER, calib="x.npz", output=Path("o"), quant=QuantOptions(per_channel=False))
    assert first_scheme(user, rec, "onnx").per_channel is False  # explicit options still win


def test_pte_moves_start_at_mixed_precision_after_a_dynamic_first_model() -> None:
    from edgeq.search.pte_search import plan_moves

    moves = plan_moves(QuantOptions(mode="static"), [], 6, ["a", "b", "c"], first_dynamic=True)
    assert [q.mode for _, q in moves] == ["dynamic"] * 3
    assert [q.nodes_to_exclude for _, q in moves] == [("a",), ("a", "b"), ("a", "b", "c")]
    assert all(q.fp16_float_linears for _, q in moves)  # kept linears as float16 GEMMs: half the bytes


@pytest.mark.slow  # both formats with .pte lowering: ~2-5 min on a loaded 2-core machine
def test_encoder_export_builds_no_static_model(tokens: tuple[Path, Path], tmp_path: Path) -> None:
    """An impossible budget so both searches run their first moves: every trial is dynamic and nothing static is
    quantized, lowered or shipped; the prediction is in the manifest and in both search records."""
    from edgeq.api import export

    calib, ev = tokens
    out = tmp_path / "out"
    res = export(PipelineConfig(model=ENCODER, calib=str(calib), eval=str(ev), output=out, formats=("onnx", "pte"),
                                budget=Budget(min_cosine=0.99999, min_nn_agreement=1.0),
                                search=SearchOptions(mode="always", max_trials=2, max_seconds=1e9)))
    m = res.manifest
    pred = m["outliers"]["scheme_prediction"]
    assert pred["pick"] == {"onnx": "dynamic", "pte": "dynamic"}
    onnx_trials = m["search"]["trials"]
    assert [t["stage"] for t in onnx_trials] == ["per-token", "mixed-precision"]
    assert all(t["mode"] == "dynamic" for t in onnx_trials)
    assert all(t["config"]["per_token"] for t in onnx_trials)  # mixed precision builds on the per-token model
    pte_trials = m["search_pte"]["trials"]
    assert pte_trials and all(t["mode"] == "dynamic" for t in pte_trials)
    assert pte_trials[0]["nodes_excluded"]  # starts at mixed precision: the plain dynamic model is the first one
    assert m["search"]["scheme_prediction"] == pred and m["search_pte"]["scheme_prediction"] == pred
    cands = {a.name for a in res.artifacts if a.role == "candidate"}
    assert cands == {"onnx-int8-dynamic", "pte-int8-dynamic"}
    assert not (out / "model.int8.onnx").exists() and not (out / "model.int8.pte").exists()
    assert not res.passed  # the budget is impossible: the verdict stands, exit 1
