"""The manifest records each INT8 artifact's recipe; building that recipe again, through the format backend's one
build path (``get_backend(fmt).build``), gives the same bytes (ONNX and .pte)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest

import edgeq
from edgeq.backends.base import get_backend
from edgeq.backends.executorch import PteBuildInputs, static_export
from edgeq.backends.onnx import OnnxBuildInputs, rename_outputs
from edgeq.export_inputs import ExportModel, load_model
from edgeq.hashing import sha256_file
from edgeq.jsontypes import as_object
from edgeq.onnx.build import build_onnx_recipe
from edgeq.onnx.export import preprocess
from edgeq.progress import Progress
from edgeq.recipe import LayerOverride, Recipe
from edgeq.targets import load_target
from tests.conftest import DIGITS_MODEL


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory,
             digits_small: tuple[Path, Path]) -> tuple[edgeq.ExportResult, ExportModel]:
    calib, ev = digits_small
    res = edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), formats="onnx,pte", validate_on=("host",),
                       max_eval_samples=32, explain=False, output=tmp_path_factory.mktemp("recipe") / "out",
                       quant=edgeq.QuantOptions(calibration="percentile", max_calibration_samples=32))
    cfg = edgeq.load_config(res.output / "edgeq.json", output=tmp_path_factory.mktemp("unused") / "b")
    return res, load_model(cfg, load_target(cfg.target), Progress(enabled=False))


def _recipe(res: edgeq.ExportResult, name: str) -> Recipe:
    art = next(a for a in res.manifest["artifacts"] if a["name"] == name)
    return Recipe.from_dict(as_object(art["quantization"]["recipe"]))


def test_the_onnx_recipe_rebuilds_the_same_bytes(exported: tuple[edgeq.ExportResult, ExportModel],
                                                 tmp_path: Path) -> None:
    res, model = exported
    recipe = _recipe(res, "onnx-int8-static")
    assert recipe.scheme == "static" and recipe.activations.calibration == "percentile"
    # the configure stage's choice for this host is in the recipe, not left to the target
    assert recipe.activations.dtype is not None and recipe.weights.per_channel is not None
    prepped, _ = preprocess(res.output / "model.fp32.onnx", tmp_path / "model.prep.onnx")
    out = tmp_path / "model.int8.onnx"
    build_onnx_recipe(prepped, out, model.calib, Recipe.from_dict(recipe.to_dict()))
    rename_outputs(out, list(model.output_names))
    assert sha256_file(out) == res.artifact("onnx-int8-static").sha256
    # the backend's build path (what the export, the search and the sweep call) gives the same file and record
    inputs = OnnxBuildInputs(calib=model.calib, prepped=prepped, output_names=tuple(model.output_names))
    cand = get_backend("onnx").build(inputs, recipe, tmp_path / "built.onnx")
    assert sha256_file(cand.path) == res.artifact("onnx-int8-static").sha256
    assert cand.record["recipe"] == as_object(res.artifact("onnx-int8-static").quantization)["recipe"]
    # and the recipe is what makes them: another calibration gives other bytes
    other = tmp_path / "other.onnx"
    build_onnx_recipe(prepped, other, model.calib,
                      replace(recipe, activations=replace(recipe.activations, calibration="minmax")))
    rename_outputs(other, list(model.output_names))
    assert sha256_file(other) != res.artifact("onnx-int8-static").sha256


def test_the_pte_recipe_rebuilds_the_same_bytes(exported: tuple[edgeq.ExportResult, ExportModel],
                                               tmp_path: Path) -> None:
    res, model = exported
    recipe = _recipe(res, "pte-int8-static")
    assert recipe.scheme == "static" and recipe.activations.max_calibration_samples == 32
    art = res.artifact("pte-int8-static")
    target = load_target(res.manifest["target"]["name"])
    inputs = PteBuildInputs(calib=model.calib, static=static_export(model.quant_captured, model.calib),
                            signature=list(model.quant_captured.signature), target=target,
                            backend_config=as_object(art.details["backend_config"]))
    cand = get_backend("pte").build(inputs, recipe, tmp_path / "model.int8.pte")
    assert sha256_file(cand.path) == art.sha256 and cand.bytes == art.bytes
    assert cand.record["recipe"] == as_object(art.quantization)["recipe"]


def test_onnx_float16_layers_are_built_recorded_and_rebuilt(digits_small: tuple[Path, Path], tmp_path: Path) -> None:
    """A kept-float linear with ``fp16_float_linears``: ONNX stores its weight in float16 (as its search does),
    the recipe says so per layer, and the recipe rebuilds the same bytes."""
    calib, ev = digits_small
    res = edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), formats="onnx", validate_on=("host",),
                       max_eval_samples=32, explain=False, output=tmp_path / "out",
                       quant=edgeq.QuantOptions(mode="dynamic", nodes_to_exclude=("node_linear_1_MatMul",),
                                                fp16_float_linears=True))
    art = res.artifact("onnx-int8-dynamic")
    recipe = _recipe(res, "onnx-int8-dynamic")
    assert recipe.overrides == (LayerOverride("node_linear_1_MatMul", "float16"),)
    assert as_object(art.quantization)["fp16_nodes"] == ["node_linear_1_MatMul"]
    inits = onnx.load(str(res.output / art.path)).graph.initializer
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in inits) == 1  # the kept linear's weight
    cfg = edgeq.load_config(res.output / "edgeq.json", output=tmp_path / "unused")
    model = load_model(cfg, load_target(cfg.target), Progress(enabled=False))
    prepped, _ = preprocess(res.output / "model.fp32.onnx", tmp_path / "model.prep.onnx")
    out = tmp_path / "again.onnx"
    build_onnx_recipe(prepped, out, model.calib, recipe)
    rename_outputs(out, list(model.output_names))
    assert sha256_file(out) == art.sha256
