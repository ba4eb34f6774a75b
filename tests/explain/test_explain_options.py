"""``edgeq explain`` rebuilds the model that shipped: a search winner with its whole recorded scheme, and the first
INT8 model (no trial's overrides) when the search met nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from edgeq.explain.run import _options


def _inputs(fmt: str, trial: dict[str, Any], met: bool = True) -> Any:
    # _options reads only the resolved options and the search record of an ExplainInputs
    key = "search" if fmt == "onnx" else "search_pte"
    return SimpleNamespace(quant={fmt: {"mode": "static", "per_channel": True, "calibration": "minmax"}},
                           search={key: {"met": met, "best": trial["index"], "trials": [trial]}})


def _artifact(fmt: str, shipped_trial: int | None) -> Any:
    # the artifact's own record of what shipped (integrate.py / integrate_pte.py write it)
    search = {"trial": shipped_trial, "met": shipped_trial is not None}
    return SimpleNamespace(format=fmt, quantization={"method": "static", "search": search})


def test_a_pte_winner_is_explained_with_its_mode_and_float16_layers() -> None:
    trial = {"index": 5, "mode": "dynamic", "dynamic_linears": False, "fp16_float_linears": True,
             "nodes_excluded": ["encoder.layer.3.output.dense"]}
    opts = _options(_inputs("pte", trial), _artifact("pte", 5))
    assert opts.mode == "dynamic" and opts.fp16_float_linears and opts.per_channel is True
    assert opts.nodes_to_exclude == ("encoder.layer.3.output.dense",)


def test_a_hybrid_pte_winner_stays_static_with_dynamic_linears() -> None:
    trial = {"index": 1, "mode": "static", "dynamic_linears": True, "nodes_excluded": []}
    opts = _options(_inputs("pte", trial), _artifact("pte", 1))
    assert opts.mode == "static" and opts.dynamic_linears and not opts.fp16_float_linears


def test_an_onnx_winner_brings_its_calibration_and_16_bit_nodes() -> None:
    trial = {"index": 3, "config": {"calibration": "percentile", "per_channel": False},
             "nodes_excluded": ["node_add_1"], "int16_activation_nodes": ["node_conv2d_50"]}
    opts = _options(_inputs("onnx", trial), _artifact("onnx", 3))
    assert opts.calibration == "percentile" and opts.per_channel is False
    assert opts.nodes_to_exclude == ("node_add_1",) and opts.int16_activation_nodes == ("node_conv2d_50",)


def test_a_search_that_met_nothing_explains_the_first_model_not_its_closest_trial() -> None:
    # MobileNetV2: the closest ONNX trial had 16-bit activations on 51 nodes, among them the worst layers, so
    # rebuilding "with the worst layer at 16 bits" on top of it measured exactly 0.0 dB: it already was
    trial = {"index": 14, "config": {"calibration": "minmax", "per_channel": True},
             "nodes_excluded": [], "int16_activation_nodes": ["node_conv2d_50", "node_conv2d_48"]}
    opts = _options(_inputs("onnx", trial, met=False), _artifact("onnx", None))
    assert opts.int16_activation_nodes == () and opts.nodes_to_exclude == ()
    assert opts.calibration == "minmax" and opts.per_channel is True
