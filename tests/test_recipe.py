"""Recipes (edgeq.recipe): lossless with QuantOptions, versioned JSON that refuses what it cannot read, and the
backends' declared support refusing what a format cannot build."""

from __future__ import annotations

import itertools
import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeq.backends.base import get_backend
from edgeq.config import CALIBRATION_METHODS, INT_TYPES, QuantOptions
from edgeq.errors import ManifestError, UsageError
from edgeq.onnx.build import store_float16_layers
from edgeq.recipe import (
    RECIPE_VERSION,
    Activations,
    GroupOverride,
    LayerOverride,
    MatMulNBits,
    OpTypeOverride,
    Recipe,
    Step,
    Weights,
)


def _accepted(**kw: object) -> QuantOptions | None:
    try:
        return QuantOptions(**kw)  # type: ignore[arg-type]
    except UsageError:
        return None


def test_every_scalar_combination_round_trips() -> None:
    """Every combination of QuantOptions' enumerable fields that QuantOptions accepts, with and without overrides:
    QuantOptions -> Recipe -> QuantOptions is the identity, and the recipe survives its JSON."""
    seen = 0
    for mode, cal, pc, act, wt, rr, dl, pt, fp16, (ex, i16, ops) in itertools.product(
            ("static", "dynamic"), (None, *CALIBRATION_METHODS), (None, True, False), (None, *INT_TYPES),
            (None, *INT_TYPES), (None, True, False), (False, True), (False, True), (False, True),
            (((), (), ()), (("fc1", "/conv/Conv"), ("/fc/Gemm",), ("Softmax",)))):
        q = _accepted(mode=mode, calibration=cal, per_channel=pc, activation_type=act, weight_type=wt,
                      reduce_range=rr, dynamic_linears=dl, per_token=pt, fp16_float_linears=fp16,
                      nodes_to_exclude=ex, int16_activation_nodes=i16, op_types_to_exclude=ops)
        if q is None:
            continue
        r = Recipe.from_quant_options(q)
        assert r.to_quant_options() == q, q
        assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r, q
        seen += 1
    # (mode, dynamic_linears, per_token): static with or without the hybrid's dynamic linears, dynamic per tensor or
    # per token; the other eight are refused by QuantOptions
    assert seen == 5 * 3 * 5 * 5 * 3 * 4 * 2 * 2


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(("static", "dynamic")), dl=st.booleans(), pt=st.booleans(), fp16=st.booleans(),
       nodes=st.lists(st.sampled_from(("a", "b", "/c/Conv", "fc.1")), max_size=4).map(tuple),
       int16=st.lists(st.sampled_from(("a", "x", "/y/Add")), max_size=3).map(tuple),
       ops=st.lists(st.sampled_from(("Softmax", "linear", "MatMul")), max_size=2).map(tuple),
       samples=st.integers(1, 10_000))
def test_any_node_lists_round_trip(mode: str, dl: bool, pt: bool, fp16: bool, nodes: tuple[str, ...],
                                   int16: tuple[str, ...], ops: tuple[str, ...], samples: int) -> None:
    """Duplicates, a node both kept float and 16-bit, op types: the options come back field for field."""
    q = _accepted(mode=mode, dynamic_linears=dl, per_token=pt, fp16_float_linears=fp16, nodes_to_exclude=nodes,
                  int16_activation_nodes=int16, op_types_to_exclude=ops, max_calibration_samples=samples)
    if q is None:
        return
    r = Recipe.from_quant_options(q)
    assert r.to_quant_options() == q
    assert Recipe.from_quant_options(r.to_quant_options()) == r
    assert Recipe.from_dict(r.to_dict()) == r


def test_fields_map_onto_overrides_and_schemes() -> None:
    q = QuantOptions(nodes_to_exclude=("fc1",), int16_activation_nodes=("/c/Conv",), fp16_float_linears=True,
                     op_types_to_exclude=("Softmax",), dynamic_linears=True)
    r = Recipe.from_quant_options(q)
    assert r.scheme == "hybrid"
    assert r.overrides == (LayerOverride("fc1", "float16"), LayerOverride("/c/Conv", "int16-activations"))
    assert r.excluded_op_types == (OpTypeOverride("Softmax", "float16"),)
    assert Recipe.from_quant_options(QuantOptions(mode="dynamic", per_token=True)).activations.granularity == "per-token"
    # nothing kept float: nothing stored in float16, one spelling of the same build
    assert QuantOptions(fp16_float_linears=True).fp16_float_linears is False
    # the round trips cover these 13 fields: a new QuantOptions field needs a place in the recipe (and here)
    assert [f.name for f in fields(QuantOptions)] == [
        "mode", "calibration", "per_channel", "activation_type", "weight_type", "reduce_range", "nodes_to_exclude",
        "op_types_to_exclude", "max_calibration_samples", "int16_activation_nodes", "dynamic_linears", "per_token",
        "fp16_float_linears"]


def test_weight_only_and_8da4w_are_expressed_but_have_no_quant_options() -> None:
    w4 = Weights(dtype="int4", group_size=32, symmetric=True)
    weight_only = Recipe(scheme="weight-only", weights=w4)
    da8w4 = Recipe(scheme="dynamic", activations=Activations(granularity="per-token"), weights=w4)
    for r in (weight_only, da8w4):
        assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r and r.weights.bits == 4
    with pytest.raises(UsageError, match="weight-only recipe has no QuantOptions") as e:
        weight_only.to_quant_options()
    assert "text-generation" in e.value.hint
    with pytest.raises(UsageError, match="int4 weights"):
        da8w4.to_quant_options()
    with pytest.raises(UsageError, match="keeps activations float"):
        Recipe(scheme="weight-only", weights=w4, activations=Activations(dtype="int8"))
    with pytest.raises(UsageError, match="per-token activation scales are a dynamic scheme"):
        Recipe(scheme="static", activations=Activations(granularity="per-token"))


def test_mixed_float_and_float16_layers_have_no_quant_options() -> None:
    r = Recipe(scheme="dynamic", overrides=(LayerOverride("attn_matmul", "float"), LayerOverride("fc1", "float16")))
    with pytest.raises(UsageError, match="both float .attn_matmul. and float16 .fc1. layers"):
        r.to_quant_options()
    q = r.kept_float32().to_quant_options()  # what the INT8 quantizer builds before fc1's weights are halved
    assert q.nodes_to_exclude == ("attn_matmul", "fc1") and not q.fp16_float_linears
    assert Recipe.from_quant_options(QuantOptions(mode="dynamic", nodes_to_exclude=("a", "fc1"))).with_float16(
        ("fc1",)).overrides == (LayerOverride("a", "float"), LayerOverride("fc1", "float16"))


# --- JSON: versions and keys ----------------------------------------------------------------------------------------
def test_a_newer_version_is_refused_with_the_fix() -> None:
    d = Recipe().to_dict()
    with pytest.raises(ManifestError, match=f"recipe version {RECIPE_VERSION + 1} is newer") as e:
        Recipe.from_dict({**d, "version": RECIPE_VERSION + 1})
    assert "upgrade edgeq" in e.value.hint
    with pytest.raises(ManifestError, match="version 0 is not supported"):
        Recipe.from_dict({**d, "version": 0})
    with pytest.raises(ManifestError, match="version must be an integer"):
        Recipe.from_dict({k: v for k, v in d.items() if k != "version"})
    with pytest.raises(UsageError, match="recipe version 2 is not supported"):
        Recipe(version=2)


@pytest.mark.parametrize(("path", "key"), [((), "rounding"), (("activations",), "bits"), (("weights",), "axis")])
def test_an_unknown_key_is_refused_by_name(path: tuple[str, ...], key: str) -> None:
    d = json.loads(json.dumps(Recipe().to_dict()))
    where = d
    for p in path:
        where = where[p]
    where[key] = 1
    with pytest.raises(ManifestError, match=f"unknown key '{key}'") as e:
        Recipe.from_dict(d)
    assert f"remove '{key}'" in e.value.hint and "recipe" + "".join(f".{p}" for p in path) in e.value.cause


@pytest.mark.parametrize(("patch", "match"), [
    ({"scheme": "int8"}, "scheme='int8' is not one of"),
    ({"weights": {"dtype": "int3"}}, "dtype='int3' is not one of"),
    ({"activations": {"max_calibration_samples": 0}}, "max_calibration_samples must be an integer >= 1"),
    ({"overrides": [{"node": "a", "kind": "int4"}]}, r"overrides\[0\]: kind='int4'"),
    ({"overrides": [{"node": "a", "kind": "float", "bits": 16}]}, "unknown key 'bits'"),
    ({"excluded_op_types": [{"op_type": "", "kind": "float"}]}, "op_type must be a non-empty string"),
    ({"weights": {"per_channel": "yes"}}, "per_channel must be true, false or null"),
    ({"scheme": "static", "activations": {"granularity": "per-token"}}, "per-token activation scales"),
])
def test_a_malformed_value_is_refused_with_the_callers_error(patch: dict[str, object], match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        Recipe.from_dict({**Recipe().to_dict(), **patch})
    with pytest.raises(UsageError, match=match):  # a config file's recipe: a usage error
        Recipe.from_dict({**Recipe().to_dict(), **patch}, where="edgeq.toml [recipe]", error=UsageError)


# --- backends: what each format builds ------------------------------------------------------------------------------
def test_onnx_builds_every_quant_options_recipe_and_refuses_n_bit_weights() -> None:
    onnx_backend = get_backend("onnx")
    onnx_backend.check_recipe(Recipe.from_quant_options(QuantOptions(
        nodes_to_exclude=("a",), int16_activation_nodes=("b",), fp16_float_linears=True)))
    onnx_backend.check_recipe(Recipe(overrides=(LayerOverride("a", "float"), LayerOverride("b", "float16"))))
    with pytest.raises(UsageError, match="--format onnx cannot build a weight-only recipe") as e:
        onnx_backend.check_recipe(Recipe(scheme="weight-only", weights=Weights(dtype="int4", group_size=32)))
    assert "text-generation" in e.value.hint
    with pytest.raises(UsageError, match="--format onnx cannot build int4 weights"):
        onnx_backend.check_recipe(Recipe(scheme="dynamic", weights=Weights(dtype="int4")))
    with pytest.raises(UsageError, match="cannot build group-wise weights .group_size 64."):
        onnx_backend.check_recipe(Recipe(weights=Weights(dtype="int8", group_size=64)))
    with pytest.raises(UsageError, match="cannot build asymmetric weights"):
        onnx_backend.check_recipe(Recipe(weights=Weights(symmetric=False)))


def test_pte_refuses_16_bit_and_mixed_float_layers() -> None:
    pte = get_backend("pte")
    pte.check_recipe(Recipe.from_quant_options(QuantOptions(mode="dynamic", nodes_to_exclude=("fc1",),
                                                            fp16_float_linears=True)))
    with pytest.raises(UsageError, match=r"--format pte cannot keep nodes at 16 bits \(a, b\): XNNPACK") as e:
        pte.check_recipe(Recipe.from_quant_options(QuantOptions(int16_activation_nodes=("a", "b"))))
    assert "--format onnx" in e.value.hint
    with pytest.raises(UsageError, match=r"cannot keep some layers float32 \(a\) and others float16: .*fp16_linears"):
        pte.check_recipe(Recipe(overrides=(LayerOverride("a", "float"), LayerOverride("b", "float16"))))
    with pytest.raises(UsageError, match="--format pte cannot build int4 weights"):
        pte.check_recipe(Recipe(scheme="dynamic", weights=Weights(dtype="int4", group_size=32)))


def _matmul_model(path: Path) -> Path:
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("recipe", [Recipe(overrides=(LayerOverride("fc", "float16"),)),
                                    Recipe(excluded_op_types=(OpTypeOverride("MatMul", "float16"),))])
def test_onnx_float16_layers_store_half_precision_weights(tmp_path: Path, recipe: Recipe) -> None:
    path = _matmul_model(tmp_path / "m.onnx")
    assert store_float16_layers(path, recipe) == ["fc"]
    inits = {t.name: t.data_type for t in onnx.load(str(path)).graph.initializer}
    assert list(inits.values()) == [TensorProto.FLOAT16]
    path = _matmul_model(tmp_path / "n.onnx")
    assert store_float16_layers(path, replace(recipe, overrides=(), excluded_op_types=())) == []  # float: untouched
    assert [t.data_type for t in onnx.load(str(path)).graph.initializer] == [TensorProto.FLOAT]



# --- a language model's ingredients: layer groups, steps, the MatMulNBits option -------------------------------------
LLM_RECIPE = Recipe(scheme="weight-only", weights=Weights("int4", None, 32, symmetric=False),
                    groups=(GroupOverride("lm_head", "int8"), GroupOverride("embedding", "float")),
                    steps=(Step("smoothquant"), Step("gptq")), matmul_nbits=MatMulNBits(1))


def test_llm_ingredients_survive_json_and_are_absent_from_other_recipes() -> None:
    d = json.loads(json.dumps(LLM_RECIPE.to_dict()))
    assert d["groups"] == [{"group": "lm_head", "dtype": "int8"}, {"group": "embedding", "dtype": "float"}]
    assert d["steps"] == [{"name": "smoothquant"}, {"name": "gptq"}] and d["matmul_nbits"] == {"accuracy_level": 1}
    assert Recipe.from_dict(d) == LLM_RECIPE and d["version"] == RECIPE_VERSION == 1
    assert LLM_RECIPE.group("lm_head") == GroupOverride("lm_head", "int8") and LLM_RECIPE.group("ends") is None
    # a recipe without them writes the keys it always wrote: stored version-1 manifests read and rebuild as before
    assert list(Recipe.from_quant_options(QuantOptions()).to_dict()) == [
        "version", "scheme", "activations", "weights", "overrides", "excluded_op_types"]


@pytest.mark.parametrize(("patch", "match"), [
    ({"groups": [{"group": "attn", "dtype": "int8"}]}, r"groups\[0\]: group='attn' is not one of lm_head"),
    ({"groups": [{"group": "lm_head"}]}, r"groups\[0\]: dtype is missing"),
    ({"groups": [{"group": "lm_head", "dtype": "int8", "bits": 8}]}, "unknown key 'bits'"),
    ({"groups": [{"group": "ends", "dtype": "int8"}, {"group": "ends", "dtype": "float"}]},
     "layer group 'ends' appears more than once"),
    ({"steps": [{"name": "awq"}]}, r"steps\[0\]: name='awq' is not one of smoothquant"),
    ({"steps": [{"name": "gptq"}, {"name": "gptq"}]}, "step 'gptq' appears more than once"),
    ({"matmul_nbits": {"accuracy_level": 5}}, "accuracy_level must be 0-4"),
    ({"matmul_nbits": {"block": 32}}, "unknown key 'block'"),
])
def test_malformed_llm_ingredients_are_refused(patch: dict[str, object], match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        Recipe.from_dict({**LLM_RECIPE.to_dict(), **patch})


def test_llm_ingredients_have_no_quant_options_and_the_tensor_backends_refuse_them() -> None:
    with pytest.raises(UsageError, match="layer groups, weight-preparation steps or MatMulNBits options"):
        replace(LLM_RECIPE, scheme="static", weights=Weights()).to_quant_options()
    for fmt in ("onnx", "pte"):
        for r in (Recipe(groups=(GroupOverride("lm_head", "int8"),)), Recipe(steps=(Step("gptq"),)),
                  Recipe(matmul_nbits=MatMulNBits())):
            with pytest.raises(UsageError, match=f"--format {fmt} cannot (store|run|take)"):
                get_backend(fmt).check_recipe(r)
