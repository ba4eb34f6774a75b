"""One build path: ``get_backend(fmt).build(inputs, recipe, out)`` turns a recipe into a candidate (its file and
size, the recipe, the record the manifest stores, and a way to run it), and refuses a recipe the format cannot
build before writing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeq.backends.base import BuildInputs, Candidate, get_backend
from edgeq.backends.executorch import PteBuildInputs, lowered_program
from edgeq.backends.onnx import OnnxBuildInputs
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.executorch.layout import read_layout
from edgeq.jsontypes import as_object
from edgeq.onnx.export import preprocess
from edgeq.recipe import Activations, LayerOverride, Recipe, Weights
from edgeq.signature import TensorSpec
from edgeq.targets import load_target
from tests.fixture_models import tiny_cnn

SHAPE = (1, 1, 8, 8)  # tiny_cnn: a 4-channel conv and a linear on 8x8 digits, 10 logits
RECIPE = Recipe(activations=Activations("int8", calibration="minmax", max_calibration_samples=8),
                weights=Weights("int8", per_channel=True, reduce_range=False))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, Path]:
    """(the pre-processed float ONNX graph, the calibration set, an inputs .npz of 4 samples)."""
    tmp = tmp_path_factory.mktemp("build")
    x = np.random.default_rng(0).standard_normal((16, *SHAPE[1:])).astype(np.float32)
    float_onnx = tmp / "model.fp32.onnx"
    torch.onnx.export(tiny_cnn(), (torch.from_numpy(x[:1]),), str(float_onnx), input_names=["image"],
                      output_names=["logits"], dynamo=True, opset_version=18, verbose=False)
    prepped, _ = preprocess(float_onnx, tmp / "model.prep.onnx")
    np.savez(tmp / "inputs.npz", image=x[:4])
    return prepped, Dataset({"image": x}), tmp / "inputs.npz"


def _pte_inputs(calib: Dataset, backend_config: dict[str, object] | None = None) -> PteBuildInputs:
    static = torch.export.export(tiny_cnn(), (torch.from_numpy(calib.inputs["image"][:1]).clone(),))
    return PteBuildInputs(calib=calib, static=static, signature=[TensorSpec("image", "float32", SHAPE)],
                          target=load_target("x86-64"), backend_config=as_object(backend_config or {}))


def _check_candidate(cand: Candidate, out: Path, inputs_npz: Path, tmp: Path) -> None:
    assert cand.path == out and out.is_file()
    assert cand.bytes == out.stat().st_size > 0
    assert cand.recipe == RECIPE
    assert Recipe.from_dict(as_object(cand.record["recipe"])) == RECIPE  # the record rebuilds this file
    res = cand.run(inputs_npz, tmp)
    assert [o.shape for o in res.outputs.values()] == [(4, 10)]
    assert all(np.isfinite(o).all() for o in res.outputs.values())


def test_onnx_builds_a_candidate_from_a_recipe(tiny: tuple[Path, Dataset, Path], tmp_path: Path) -> None:
    prepped, calib, inputs_npz = tiny
    out = tmp_path / "model.int8.onnx"
    cand = get_backend("onnx").build(OnnxBuildInputs(calib=calib, prepped=prepped, output_names=("output_0",)),
                                     RECIPE, out)
    assert cand.fmt == "onnx" and cand.files == (out,)
    _check_candidate(cand, out, inputs_npz, tmp_path)
    assert cand.record["calibration"] == "minmax" and cand.record["method"] == "static"
    assert list(cand.run(inputs_npz, tmp_path).outputs) == ["output_0"]  # the canonical output name


def test_pte_builds_a_candidate_lowered_with_the_backend_config(tiny: tuple[Path, Dataset, Path],
                                                                tmp_path: Path) -> None:
    """The target's ExecutorchBackendConfig (Android's 16 KB segments) is what the candidate is lowered with."""
    _, calib, inputs_npz = tiny
    out = tmp_path / "model.int8.pte"
    config = {"extract_delegate_segments": True, "segment_alignment": 16384}
    cand = get_backend("pte").build(_pte_inputs(calib, config), RECIPE, out)
    assert cand.fmt == "pte"
    _check_candidate(cand, out, inputs_npz, tmp_path)
    assert cand.record["backend_config"] == config == cand.details["backend_config"]
    assert as_object(cand.details["delegation"])  # the lowered program's XNNPACK delegation report
    assert lowered_program(cand).buffer == out.read_bytes()  # the program the golden-I/O bundle serializes
    layout = read_layout(out)
    assert layout.segments and not layout.misaligned(16384) and layout.inline_delegates == 0


@pytest.mark.parametrize(("fmt", "recipe", "match"), [
    ("onnx", Recipe(scheme="weight-only", weights=Weights("int4", group_size=32)), "weight-only"),
    ("pte", Recipe(overrides=(LayerOverride("body.0", "int16-activations"),)), "cannot keep nodes at 16 bits"),
])
def test_a_recipe_outside_the_format_is_refused_before_any_file(fmt: str, recipe: Recipe, match: str,
                                                                tiny: tuple[Path, Dataset, Path],
                                                                tmp_path: Path) -> None:
    prepped, calib, _ = tiny
    inputs: BuildInputs = (OnnxBuildInputs(calib=calib, prepped=prepped) if fmt == "onnx" else _pte_inputs(calib))
    out = tmp_path / "never" / f"model.{fmt}"
    with pytest.raises(UsageError, match=match):
        get_backend(fmt).build(inputs, recipe, out)
    assert not out.exists() and not out.parent.exists()


def test_a_backend_refuses_another_formats_inputs(tiny: tuple[Path, Dataset, Path], tmp_path: Path) -> None:
    prepped, calib, _ = tiny
    with pytest.raises(UsageError, match="builds from PteBuildInputs"):
        get_backend("pte").build(OnnxBuildInputs(calib=calib, prepped=prepped), RECIPE, tmp_path / "x.pte")
    assert not (tmp_path / "x.pte").exists()
