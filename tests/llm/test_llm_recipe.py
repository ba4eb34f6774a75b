"""The LLM ladder's variants are recipes (edgeq.recipe): lossless both ways, each format refuses what it cannot
build, every LLM artifact records its recipe, and building that recipe again gives the same bytes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.errors import UsageError
from edgeq.hashing import sha256_file
from edgeq.llm.api import check_config
from edgeq.llm.build import LlmBuildInputs, get_llm_builder
from edgeq.llm.config import ACTIVATIONS, ALGOS, LlmConfig, Variant
from edgeq.llm.search import float_variant, ladder
from edgeq.recipe import GroupOverride, MatMulNBits, Recipe, Step, Weights

KEEP8 = [c for n in range(4) for c in permutations(("lm_head", "mixed", "ends"), n)]  # any groups, any order


@settings(max_examples=400, deadline=None)
@given(fmt=st.sampled_from(("onnx", "pte")), bits=st.sampled_from((4, 8)), group=st.sampled_from((0, 16, 32, 64, 128)),
       symmetric=st.booleans(), activations=st.sampled_from(ACTIVATIONS), keep8=st.sampled_from(KEEP8),
       embedding_bits=st.sampled_from((0, 4, 8)), algo=st.sampled_from(ALGOS), accuracy_level=st.integers(0, 4),
       smooth=st.booleans())
def test_every_variant_is_a_recipe_and_back(fmt: str, bits: int, group: int, symmetric: bool, activations: str,
                                            keep8: tuple[str, ...], embedding_bits: int, algo: str,
                                            accuracy_level: int, smooth: bool) -> None:
    """Any combination of the fields the ladder sets: the recipe survives its JSON, and a recipe the format
    builds gives the variant back (and the variant the recipe); one it cannot build is refused both ways."""
    v = Variant(fmt, bits, group, symmetric, activations, keep8, embedding_bits, algo, accuracy_level, smooth)
    r = v.to_recipe()
    assert r is not None
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    try:
        v.check()
    except UsageError:
        with pytest.raises(UsageError):
            Variant.from_recipe(fmt, r)
        return
    back = Variant.from_recipe(fmt, r)
    assert back == v and back.name == v.name
    assert back.to_recipe() == r


def test_the_ladder_and_the_float_build_round_trip() -> None:
    for fmt in ("onnx", "pte"):
        for v in ladder(fmt):
            v.check()  # every rung the ladder walks is a recipe its format builds
            if v.keep8_cap:  # a measured rung is built (and recorded) as resolved: explicit groups, no cap
                v = replace(v, keep8_cap=0.0, keep8=("lm_head", "block3"))
            assert Variant.from_recipe(fmt, Recipe.from_dict(json.loads(json.dumps(v.to_recipe().to_dict())))) == v
        assert float_variant(fmt).to_recipe() is None  # nothing quantized: no recipe, like a float tensor export
        assert Variant.from_recipe(fmt, None) == float_variant(fmt)


def test_the_recipe_spells_out_groups_steps_and_the_kernel_option() -> None:
    onnx4, onnx8, pte8 = ladder("onnx")[1], ladder("onnx")[-1], ladder("pte")[-1]
    pte4 = replace(ladder("pte")[1], keep8_cap=0.0, keep8=("lm_head", "block3"))  # the measured rung, resolved
    r = onnx4.to_recipe()
    assert r is not None and r.scheme == "weight-only"
    assert r.weights == Weights("int4", None, 32, symmetric=False)
    assert r.groups == (GroupOverride("lm_head", "int8"),)  # the embedding table follows the 4-bit body
    assert r.steps == (Step("gptq"),) and r.matmul_nbits == MatMulNBits(4)
    r = onnx8.to_recipe()
    assert r is not None and r.groups == (GroupOverride("embedding", "float"),)  # embedding_bits=0
    r = pte4.to_recipe()
    assert r is not None and r.scheme == "dynamic" and r.activations.granularity == "per-token"
    assert r.groups == (GroupOverride("lm_head", "int8"), GroupOverride("block3", "int8"))  # the table follows
    assert r.matmul_nbits is None  # an ONNX Runtime kernel option: not part of a .pte recipe
    r = pte8.to_recipe()
    assert r is not None and r.steps == (Step("smoothquant"),) and r.weights.per_channel is True


@pytest.mark.parametrize(("variant", "match"), [
    (Variant("onnx", 4, 32, keep8=("ends",), embedding_bits=4),
     "--format onnx cannot store the ends layers' weights int8: onnxruntime-genai's builder keeps only"),
    (Variant("pte", 4, 32, activations="dynamic-int8", keep8=("mixed",)),
     "--format pte cannot store the mixed layers' weights int8: llama.cpp's sensitive-layer list"),
    (Variant("pte", 4, 32, activations="dynamic-int8", algo="hqq"), "--format pte cannot run the hqq step: .*HQQ"),
    (Variant("pte", 4, 32, activations="dynamic-int8", algo="k_quant"), "--format pte cannot run the k_quant step"),
    (Variant("onnx", 8, 32, embedding_bits=0, smooth=True), "--format onnx cannot run the smoothquant step"),
    (Variant("onnx", 4, 32, activations="dynamic-int8", embedding_bits=4), "--format onnx cannot build a dynamic"),
    (Variant("pte", 4, 32, symmetric=False), "--format pte cannot build asymmetric weights"),
    (Variant("pte", 8, 0, activations="dynamic-int8", accuracy_level=1), "--format pte cannot take MatMulNBits"),
    (Variant("onnx", 8, 32, embedding_bits=8),
     "--format onnx cannot store the embedding table int8 .the body's width.*GatherBlockQuantized is 4-bit only"),
    (Variant("onnx", 4, 32, embedding_bits=8), "--format onnx cannot store the embedding layers' weights int8"),
    (Variant("onnx", 6, 32), "bits=6 is not one of 4, 8, 32"),
    (Variant("pte", 4, 32, keep8=("attn",)), "keep8='attn' is not one of lm_head, mixed, ends"),
])
def test_each_format_refuses_what_it_does_not_build(variant: Variant, match: str) -> None:
    with pytest.raises(UsageError, match=match) as e:
        variant.check()
    assert e.value.hint


def test_recipes_outside_the_variants_words_are_refused() -> None:
    body = Weights("int4", None, 32)
    with pytest.raises(UsageError, match="smoothquant, then one rounding step"):
        Variant.from_recipe("pte", Recipe(scheme="weight-only", weights=body, steps=(Step("gptq"), Step("smoothquant"))))
    with pytest.raises(UsageError, match="smoothquant, then one rounding step"):
        Variant.from_recipe("onnx", Recipe(scheme="weight-only", weights=body, steps=(Step("gptq"), Step("hqq"))))
    with pytest.raises(UsageError, match="names its weight type"):
        Variant.from_recipe("onnx", Recipe(scheme="weight-only"))
    with pytest.raises(UsageError, match="int8 per-token activations"):
        Variant.from_recipe("pte", Recipe(scheme="dynamic", weights=body))
    with pytest.raises(UsageError, match="reduce_range"):
        Variant.from_recipe("onnx", Recipe(scheme="weight-only", weights=Weights("int4", None, 32, reduce_range=True)))
    with pytest.raises(UsageError, match="cannot keep the lm_head layers. weights float .it builds int8."):
        Variant.from_recipe("onnx", Recipe(scheme="weight-only", weights=body,
                                           groups=(GroupOverride("lm_head", "float"),)))
    with pytest.raises(UsageError, match="unknown format 'tflite'"):
        Variant.from_recipe("tflite", Recipe(scheme="weight-only", weights=body))


def test_the_export_refuses_a_variant_before_loading_the_model(tmp_path: Path) -> None:
    cfg = LlmConfig(model=str(tmp_path / "no-model"), output=tmp_path / "out", calib_text=tmp_path / "c.txt",
                    variants=(Variant("onnx", 4, 32, keep8=("ends",), embedding_bits=4),))
    with pytest.raises(UsageError, match="--format onnx cannot store the ends layers"):
        check_config(cfg)


# --- the manifest's record, and the rebuild from it --------------------------------------------------------------
def _recipe(art: dict[str, Any]) -> Recipe | None:
    q = art["quantization"]
    return None if q is None else Recipe.from_dict(q["recipe"])


def test_every_llm_artifact_records_its_recipe(tiny_lm_export: Any) -> None:
    m = json.loads((tiny_lm_export.output / "edgeq.json").read_text())
    assert {a["name"] for a in m["artifacts"]} == {"onnx-w4g32-emb4", "onnx-w8g32-embf", "pte-8da8pc-emb8"}
    for a in m["artifacts"]:
        recipe = _recipe(a)
        assert recipe is not None and a["quantization"]["scheme"] == recipe.scheme
        assert Variant.from_recipe(a["format"], recipe).name == a["name"] == a["quantization"]["variant"]
    assert _recipe(next(a for a in m["artifacts"] if a["format"] == "pte")).scheme == "dynamic"


def _folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("name", ["onnx-w4g32-emb4", "onnx-w8g32-embf"])
def test_the_onnx_recipe_rebuilds_the_same_bytes(tiny_lm_export: Any, tiny_lm: dict[str, Path], tmp_path: Path,
                                                 name: str) -> None:
    """From the manifest's recipe alone (and the source model), the ONNX LM builder (edgeq.llm.build) writes the same
    folder: the graph, its external weights and genai_config.json, byte for byte."""
    m = json.loads((tiny_lm_export.output / "edgeq.json").read_text())
    art = next(a for a in m["artifacts"] if a["name"] == name)
    recipe = _recipe(art)
    inputs = _inputs(tiny_lm, tmp_path, m["config"])
    cand = get_llm_builder("onnx").build(inputs, recipe, tmp_path / "rebuilt")
    assert cand.path == tmp_path / "rebuilt" / "model.onnx" and cand.recipe == recipe
    assert sha256_file(cand.path) == art["sha256"] and cand.bytes == art["bytes"]
    assert cand.record == art["quantization"]
    shipped = tiny_lm_export.output / art["details"]["folder"]
    rebuilt = _folder_hashes(cand.path.parent)
    assert {"model.onnx", "model.onnx.data", "genai_config.json"} <= set(rebuilt) == {p.name for p in cand.files}
    assert rebuilt == {k: h for k, h in _folder_hashes(shipped).items() if k in rebuilt}
    # and the recipe is what makes them: another block size gives other bytes
    other = get_llm_builder("onnx").build(inputs, _with_group(recipe, 64), tmp_path / "other")
    assert sha256_file(other.path.parent / "model.onnx.data") != rebuilt["model.onnx.data"]


def _inputs(tiny_lm: dict[str, Path], tmp_path: Path, cfg: dict[str, Any]) -> LlmBuildInputs:
    """The LM build inputs of the recorded run: the source model, its HF folder, and the .pte lowering from the
    recorded options (max_context, delegation, program) and the target's layout. No calibration windows: the
    recipes rebuilt here (no gptq, no smoothquant) read none."""
    from edgeq.llm.pte_delegation import DELEGATION_EXTENDED_OPS
    from edgeq.llm.pte_export import PteLowering
    from edgeq.llm.source import load_lm, save_hf_folder
    from edgeq.llm.target_checks import backend_config
    from edgeq.targets import load_target

    lm = load_lm(str(tiny_lm["model"]))
    lowering = PteLowering(extended_ops=DELEGATION_EXTENDED_OPS[cfg["pte_delegation"]],
                           program=None if cfg["pte_program"] == "auto" else cfg["pte_program"],
                           segment_alignment=backend_config(load_target(cfg["target"])).segment_alignment)
    return LlmBuildInputs(lm, save_hf_folder(lm, tmp_path / "hf"), None,
                          tmp_path / "cache", cfg["max_context"], lowering)


def _with_group(recipe: Recipe | None, group: int) -> Recipe:
    assert recipe is not None
    return replace(recipe, weights=replace(recipe.weights, group_size=group))


def test_the_pte_recipe_rebuilds_the_same_bytes(tiny_lm_export: Any, tiny_lm: dict[str, Path],
                                                tmp_path: Path) -> None:
    """The .pte program from its recorded recipe, the recorded run options (max_context, the .pte program) and the
    target's layout, through the .pte LM builder (edgeq.llm.build): the same bytes (seconds on the tiny Llama)."""
    m = json.loads((tiny_lm_export.output / "edgeq.json").read_text())
    art = next(a for a in m["artifacts"] if a["format"] == "pte")
    cand = get_llm_builder("pte").build(_inputs(tiny_lm, tmp_path, m["config"]), _recipe(art), tmp_path / "again.pte")
    out = cand.path
    assert cand.files == (out,) and cand.bytes == art["bytes"] and cand.record == art["quantization"]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == art["sha256"]
