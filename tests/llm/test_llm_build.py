"""The LM build path (edgeq.llm.build): a recipe in, a Candidate out (its files, bytes, build record and a way to
run it), as a tensor format's backend builds; a recipe the format cannot build is refused before any file is
written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import UsageError
from edgeq.hashing import sha256_file
from edgeq.jsontypes import get_object
from edgeq.llm.build import LlmBuildInputs, get_llm_builder
from edgeq.llm.config import Variant
from edgeq.llm.metrics import score
from edgeq.llm.runners import OnnxLM
from edgeq.recipe import GroupOverride, Recipe, Weights


@pytest.fixture(scope="module")
def inputs(tiny_lm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> LlmBuildInputs:
    from edgeq.llm.source import load_lm, save_hf_folder

    d = tmp_path_factory.mktemp("llm_build")
    lm = load_lm(str(tiny_lm["model"]))
    calib = np.arange(3, 3 + 2 * 32, dtype=np.int64).reshape(2, 32) % int(lm.model.config.vocab_size)
    return LlmBuildInputs(lm, save_hf_folder(lm, d / "hf"), calib, d / "cache", 64)


def test_an_onnx_lm_candidate_from_a_recipe(inputs: LlmBuildInputs, tmp_path: Path) -> None:
    """The ONNX LM folder is the candidate's files (model.onnx first); its bytes are the graph and weights; its
    record is the artifact's quantization (the recipe that rebuilds it); its runner scores token windows."""
    v = Variant("onnx", 4, 32, embedding_bits=4)
    recipe = v.to_recipe()
    assert recipe is not None
    cand = get_llm_builder("onnx").build(inputs, recipe, tmp_path / "q4")
    folder = tmp_path / "q4"
    assert cand.fmt == "onnx" and cand.recipe == recipe and cand.path == folder / "model.onnx"
    assert {p.name for p in cand.files} == {p.name for p in folder.iterdir() if p.is_file()}
    assert {"model.onnx", "model.onnx.data", "genai_config.json"} <= {p.name for p in cand.files}
    assert cand.bytes == sum(p.stat().st_size for p in folder.glob("model.onnx*"))
    assert cand.record == {"format": "onnx", "scheme": "weight-only", "variant": v.name, "recipe": recipe.to_dict()}
    assert Variant.from_recipe("onnx", Recipe.from_dict(get_object(cand.record, "recipe"))) == v
    windows = np.arange(5, 5 + 2 * 16, dtype=np.int64).reshape(2, 16)
    np.savez(tmp_path / "windows.npz", windows=windows)
    res = cand.run(tmp_path / "windows.npz", tmp_path)
    want = score(OnnxLM(folder), windows)
    assert np.array_equal(res.outputs["argmax"], want.argmax) and np.allclose(res.outputs["nll"], want.nll)
    assert res.runtime == "onnxruntime" and np.isfinite(res.outputs["nll"]).all()
    # the same recipe through the same builder: the same bytes
    again = get_llm_builder("onnx").build(inputs, Recipe.from_dict(recipe.to_dict()), tmp_path / "again")
    assert sha256_file(again.path) == sha256_file(cand.path) and again.bytes == cand.bytes


def test_the_float_build_has_no_recipe(inputs: LlmBuildInputs, tmp_path: Path) -> None:
    cand = get_llm_builder("onnx").build(inputs, None, tmp_path / "fp32")
    assert cand.recipe is None and cand.record == {} and cand.path.is_file()


@pytest.mark.parametrize(("fmt", "recipe", "match"), [
    ("onnx", Recipe(scheme="weight-only", weights=Weights("int4", None, 32),
                    groups=(GroupOverride("ends", "int8"), GroupOverride("embedding", "int4"))),
     "--format onnx cannot store the ends layers' weights int8"),
    ("pte", Recipe(scheme="weight-only", weights=Weights("int4", None, 32, symmetric=False)),
     "--format pte cannot build asymmetric weights"),
])
def test_a_refused_recipe_writes_nothing(inputs: LlmBuildInputs, tmp_path: Path, fmt: str, recipe: Recipe,
                                         match: str) -> None:
    out = tmp_path / "nested" / ("m.pte" if fmt == "pte" else "m")
    with pytest.raises(UsageError, match=match) as e:
        get_llm_builder(fmt).build(inputs, recipe, out)
    assert e.value.hint and not (tmp_path / "nested").exists()


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown format 'tflite' for text generation"):
        get_llm_builder("tflite")
