"""``edgeq explain`` rebuilds the model that shipped: for a ``.pte`` search winner, its whole recorded scheme."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from edgeq.explain.run import _options


def _inputs(trial: dict[str, Any]) -> Any:
    # _options reads only the resolved options and the search record of an ExplainInputs
    return SimpleNamespace(quant={"pte": {"mode": "static", "per_channel": True}},
                           search={"search_pte": {"met": True, "best": trial["index"], "trials": [trial]}})


def test_a_pte_winner_is_explained_with_its_mode_and_float16_layers() -> None:
    trial = {"index": 5, "mode": "dynamic", "dynamic_linears": False, "fp16_float_linears": True,
             "nodes_excluded": ["encoder.layer.3.output.dense"]}
    opts = _options(_inputs(trial), "pte")
    assert opts.mode == "dynamic" and opts.fp16_float_linears and opts.per_channel is True
    assert opts.nodes_to_exclude == ("encoder.layer.3.output.dense",)


def test_a_hybrid_pte_winner_stays_static_with_dynamic_linears() -> None:
    opts = _options(_inputs({"index": 1, "mode": "static", "dynamic_linears": True, "nodes_excluded": []}), "pte")
    assert opts.mode == "static" and opts.dynamic_linears and not opts.fp16_float_linears
