"""Recipes: what goes into a quantized candidate, as frozen, versioned values (see :mod:`edgeq.recipe.recipe`)."""

from __future__ import annotations

from edgeq.recipe.parts import (
    OVERRIDE_KINDS,
    SCHEMES,
    WEIGHT_TYPES,
    Activations,
    FloatKind,
    Granularity,
    LayerOverride,
    OpTypeOverride,
    OverrideKind,
    RecipeScheme,
    Weights,
    WeightType,
)
from edgeq.recipe.recipe import RECIPE_VERSION, Recipe
from edgeq.recipe.support import Reason, RecipeSupport, check_support

__all__ = ["OVERRIDE_KINDS", "RECIPE_VERSION", "SCHEMES", "WEIGHT_TYPES", "Activations", "FloatKind", "Granularity",
           "LayerOverride", "OpTypeOverride", "OverrideKind", "Reason", "Recipe", "RecipeScheme", "RecipeSupport",
           "Weights", "WeightType", "check_support"]
