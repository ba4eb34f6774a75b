"""Recipes: what goes into a quantized candidate, as frozen, versioned values (see :mod:`edgeq.recipe.recipe`)."""

from __future__ import annotations

from edgeq.recipe.parts import (
    LAYER_GROUPS,
    OVERRIDE_KINDS,
    SCHEMES,
    STEP_NAMES,
    WEIGHT_TYPES,
    Activations,
    FloatKind,
    Granularity,
    GroupOverride,
    GroupType,
    LayerGroup,
    LayerOverride,
    MatMulNBits,
    OpTypeOverride,
    OverrideKind,
    RecipeScheme,
    Step,
    StepName,
    Weights,
    WeightType,
    block_group,
    block_index,
)
from edgeq.recipe.recipe import RECIPE_VERSION, Recipe
from edgeq.recipe.support import Reason, RecipeSupport, check_support

__all__ = ["LAYER_GROUPS", "OVERRIDE_KINDS", "RECIPE_VERSION", "SCHEMES", "STEP_NAMES", "WEIGHT_TYPES", "Activations",
           "FloatKind", "Granularity", "GroupOverride", "GroupType", "LayerGroup", "LayerOverride", "MatMulNBits",
           "OpTypeOverride", "OverrideKind", "Reason", "Recipe", "RecipeScheme", "RecipeSupport", "Step", "StepName",
           "Weights", "WeightType", "block_group", "block_index", "check_support"]
