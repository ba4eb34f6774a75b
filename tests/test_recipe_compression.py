"""A recipe's compression steps (``Recipe.compression``): the ``--compress`` configs in order, written in the
manifest ``compression`` section's vocabulary, read back exactly, refused by key when malformed, and declared per
format."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgeq.backends.base import get_backend
from edgeq.compress.spec import COMPRESS_VERSION, CompressOptions, QatConfig, parse_spec
from edgeq.config import QuantOptions
from edgeq.errors import ManifestError, UsageError
from edgeq.recipe import Recipe, RecipeSupport, check_support

SPECS = ("prune:0.3", "sparse:0.5", "lowrank:0.9", "cluster:16", "qat", "qat:4",
         "prune:0.25,lowrank:0.8,cluster:32,sparse:0.6,qat:4", "cluster:4,prune:0.5")


@pytest.mark.parametrize("spec", SPECS)
def test_compression_steps_round_trip_in_the_compress_sections_words(spec: str) -> None:
    methods = parse_spec(spec)
    base = Recipe.from_quant_options(QuantOptions(per_channel=True))
    r = replace(base, compression=methods)
    d = json.loads(json.dumps(r.to_dict()))
    assert Recipe.from_dict(d) == r and Recipe.from_dict(d).compression == methods
    assert list(d) == [*base.to_dict(), "compression"]
    # one vocabulary: the rows the manifest's compression section writes for the same --compress
    assert d["compression"] == {"version": COMPRESS_VERSION, "methods": CompressOptions.from_spec(spec).to_dict()["methods"]}
    # a torch-side preparation, not a quantizer setting: the same QuantOptions build it
    assert r.to_quant_options() == base.to_quant_options()


def test_a_recipe_without_compression_writes_the_keys_it_always_wrote() -> None:
    d = Recipe.from_quant_options(QuantOptions()).to_dict()
    assert list(d) == ["version", "scheme", "activations", "weights", "overrides", "excluded_op_types"]
    assert Recipe.from_dict(d).compression == ()
    assert Recipe.from_dict({**d, "compression": None}).compression == ()
    assert Recipe.from_dict({**d, "compression": {"version": COMPRESS_VERSION, "methods": []}}).compression == ()


def _with(compression: object) -> dict[str, object]:
    return {**Recipe().to_dict(), "compression": compression}


@pytest.mark.parametrize(("compression", "match"), [
    ({"version": COMPRESS_VERSION + 1, "methods": []}, f"compression version {COMPRESS_VERSION + 1} is newer"),
    ({"version": 0, "methods": []}, "compression version 0 is not supported"),
    ({"methods": []}, "compression: version must be an integer"),
    ({"version": 1, "methods": [], "train": {}}, "compression: unknown key 'train'"),
    ({"version": 1, "methods": [{"method": "distill"}]}, r"compression.methods\[0\]: unknown compression method 'distill'"),
    ({"version": 1, "methods": [{"ratio": 0.3}]}, r"methods\[0\]: unknown compression method None"),
    ({"version": 1, "methods": [{"method": "prune", "ratio": 0.3, "energy": 0.9}]},
     r"methods\[0\]: unknown key 'energy' for prune"),
    ({"version": 1, "methods": [{"method": "cluster", "clusters": 16.5}]}, "clusters=16.5 has the wrong type"),
    ({"version": 1, "methods": [{"method": "prune", "ratio": True}]}, "ratio=True has the wrong type"),
    ({"version": 1, "methods": [{"method": "qat", "per_channel": "yes"}]}, "per_channel='yes' has the wrong type"),
    ({"version": 1, "methods": [{"method": "sparse", "ratio": 1.5}]}, r"methods\[0\]: sparse ratio must be in \(0, 1\)"),
    ({"version": 1, "methods": [{"method": "qat", "bits": 2}]}, "qat weight bits must be 4 or 8"),
    ({"version": 1, "methods": [{"method": "prune"}, {"method": "prune", "ratio": 0.5}]},
     "compression method 'prune' appears more than once"),
    ({"version": 1, "methods": [{"method": "qat"}, {"method": "prune"}]}, "qat must be the last compression step"),
    ({"version": 1, "methods": {"method": "prune"}}, "compression.methods"),
    ([{"method": "prune"}], "recipe.compression"),
])
def test_malformed_compression_is_refused_by_key_with_the_callers_error(compression: object, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        Recipe.from_dict(_with(compression))
    with pytest.raises(UsageError, match=match):  # a config file's recipe: a usage error
        Recipe.from_dict(_with(compression), where="recipe", error=UsageError)


def test_the_tensor_formats_build_compressed_models_and_a_format_that_does_not_declare_it_refuses() -> None:
    r = Recipe(compression=parse_spec("prune:0.5,qat"))
    for fmt in ("onnx", "pte"):
        assert get_backend(fmt).recipe_support.compression
        get_backend(fmt).check_recipe(r)
    other = RecipeSupport(fmt="onnx-llm", schemes=("static",), override_kinds=(), weight_types=("int8",))
    check_support(Recipe(), other)
    with pytest.raises(UsageError, match="--format onnx-llm cannot build from a model compressed with prune, qat"):
        check_support(r, other)
    assert r.compression[-1] == QatConfig()
