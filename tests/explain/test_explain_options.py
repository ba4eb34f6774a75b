"""``edgeq explain`` rebuilds the model that shipped, from the recipe its artifact records — a search winner's
whole scheme, or the first model's when the search met nothing (never the closest trial's overrides)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from edgeq.config import QuantOptions
from edgeq.errors import ManifestError
from edgeq.explain.run import _options
from edgeq.recipe import Recipe


def _artifact(opts: QuantOptions | None, fmt: str = "pte") -> Any:
    # _options reads only the artifact's name and quantization record (the backends and searches write the recipe)
    q: dict[str, Any] = {"method": opts.mode if opts else "static", "search": {"trial": None, "met": False}}
    if opts is not None:
        q["recipe"] = Recipe.from_quant_options(opts).to_dict()
    return SimpleNamespace(name=f"{fmt}-int8-static", format=fmt, quantization=q)


def test_a_pte_winner_is_explained_with_its_mode_and_float16_layers() -> None:
    shipped = QuantOptions(mode="dynamic", per_channel=True, fp16_float_linears=True,
                           nodes_to_exclude=("encoder.layer.3.output.dense",))
    assert _options(_artifact(shipped)) == shipped


def test_an_onnx_model_brings_its_calibration_and_16_bit_nodes() -> None:
    shipped = QuantOptions(calibration="percentile", per_channel=False, activation_type="uint8", weight_type="int8",
                           nodes_to_exclude=("node_add_1",), int16_activation_nodes=("node_conv2d_50",))
    assert _options(_artifact(shipped, "onnx")) == shipped


def test_an_artifact_without_a_recipe_is_refused_by_name() -> None:
    with pytest.raises(ManifestError, match="pte-int8-static: its quantization record has no recipe"):
        _options(_artifact(None))
