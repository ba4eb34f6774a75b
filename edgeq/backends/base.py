"""The format backend interface: every format (``onnx``, ``pte``; later ones plug in) implements the same four steps.

- ``capture``: the float model in the format (writes the fp32 baseline artifact, sets ``model_path``/``program``);
- ``quantize(scheme)``: INT8 with the resolved scheme (calibrated on the shared calibration set); it starts with
  ``check_recipe``, which refuses a recipe (:class:`edgeq.recipe.Recipe`) with an ingredient outside the format's
  declared ``recipe_support`` instead of building something else, and the artifact records the recipe it was
  built from (``quantization.recipe``);
- ``emit``: write the quantized artifact(s) and add them to ``BuildState.artifacts``;
- ``load_runner``: how this machine executes the format's artifacts (the host program for validation).

:func:`edgeq.pipeline.pipeline.build_format` drives them and runs the target's Transform stages between them;
the export API, the search and validation see only this interface.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from edgeq.config import QuantOptions
from edgeq.errors import UsageError
from edgeq.pipeline.state import BuildState
from edgeq.recipe import Recipe, RecipeSupport, check_support
from edgeq.validate.runners.base import RunResult

HostProgram = Callable[[Path, Path, Path], RunResult]  # (artifact, inputs.npz, workdir) -> outputs + timing


class FormatBackend(ABC):
    name: ClassVar[str]
    recipe_support: ClassVar[RecipeSupport]  # the recipes this format builds; check_recipe refuses the rest

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise :class:`UsageError` (cause: the ingredient and why; hint: the fix) for a recipe this format cannot
        build as written."""
        check_support(recipe, self.recipe_support)

    @abstractmethod
    def preflight(self, state: BuildState) -> None:
        """Refuse inputs this format cannot build (typed error) before any slow work."""

    @abstractmethod
    def capture(self, state: BuildState) -> BuildState: ...

    def scheme(self, state: BuildState) -> QuantOptions:
        """The quantization options in force after the configure stages: unset fields from the target."""
        return state.quant.resolved(state.target.quant_defaults())

    @abstractmethod
    def quantize(self, state: BuildState, scheme: QuantOptions) -> BuildState: ...

    @abstractmethod
    def emit(self, state: BuildState) -> BuildState: ...

    @abstractmethod
    def load_runner(self) -> HostProgram: ...


_BACKENDS: dict[str, type[FormatBackend]] = {}
# Imported on first use: each backend pulls in its toolchain (onnxruntime, or torch + executorch).
_MODULES = {"onnx": "edgeq.backends.onnx", "pte": "edgeq.backends.executorch"}


def register_format(cls: type[FormatBackend]) -> type[FormatBackend]:
    if cls.name in _BACKENDS:
        raise UsageError(f"format {cls.name!r} registered twice")
    _BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str) -> FormatBackend:
    if name not in _BACKENDS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _BACKENDS:
        raise UsageError(f"format {name!r} is not available", f"available: {', '.join(sorted(_MODULES))}")
    return _BACKENDS[name]()


def format_names() -> list[str]:
    return sorted(_MODULES)
