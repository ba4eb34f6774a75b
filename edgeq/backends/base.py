"""The format backend interface: every format (``onnx``, ``pte``; later ones plug in) implements the same steps.

- ``build(inputs, recipe, out)``: the one build path. It turns a recipe (:class:`edgeq.recipe.Recipe`) into a
  :class:`Candidate`: the built file(s) and their size, the recipe, the build record the manifest stores as the
  artifact's ``quantization`` (``quantization.recipe`` included, so a rebuild from it gives the same bytes), and how
  to run it on this machine. It starts with ``check_recipe``, which refuses a recipe with an ingredient outside the
  format's declared ``recipe_support`` (typed error, before any file is written) instead of building something
  else. ``inputs`` is the format's own :class:`BuildInputs` (ONNX: the pre-processed float graph; ``.pte``: the
  static-batch program, the target and its ``ExecutorchBackendConfig``); the export's first INT8 model, every search
  trial and every ``edgeq sweep`` variant are built through it;
- ``capture``: the float model in the format (writes the fp32 baseline artifact, sets ``model_path``/``program``);
- ``quantize(scheme)``: the first INT8 model: the resolved scheme's recipe through ``build``, calibrated on the
  shared calibration set (``BuildState.candidate``);
- ``emit``: write the quantized artifact(s) and add them to ``BuildState.artifacts``;
- ``load_runner``: how this machine executes the format's artifacts (the host program for validation).

:func:`edgeq.pipeline.pipeline.build_format` drives them and runs the target's Transform stages between them;
the export API, the search and validation see only this interface.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.candidate import Candidate, HostProgram
from edgeq.pipeline.state import BuildState
from edgeq.recipe import Recipe, RecipeSupport, check_support

__all__ = ["BuildInputs", "Candidate", "FormatBackend", "HostProgram", "format_names", "get_backend",
           "register_format"]


@dataclass(frozen=True, kw_only=True)
class BuildInputs:
    """What a format's build reads besides the recipe; each format extends it with its prepared model. The export
    (from its ``BuildState``) and the searches (from what they hold) construct the same record."""

    calib: Dataset  # the calibration set (static recipes calibrate on it)
    on_sample: Callable[[], None] | None = field(default=None, compare=False)  # after each calibration sample
    # facts about these inputs the build record carries, before the recipe (ONNX: the pre-processing note, whether
    # the graph is edgeq.prepare's outlier-prepared copy)
    notes: JSONObject = field(default_factory=dict)


class FormatBackend(ABC):
    name: ClassVar[str]
    recipe_support: ClassVar[RecipeSupport]  # the recipes this format builds; check_recipe refuses the rest

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise :class:`UsageError` (cause: the ingredient and why; hint: the fix) for a recipe this format cannot
        build as written."""
        check_support(recipe, self.recipe_support)

    @staticmethod
    def scheme_recipe(state: BuildState, scheme: QuantOptions) -> Recipe:
        """The recipe ``quantize`` builds: ``scheme``'s, with the ``--compress`` steps the captured model went through
        (a torch-side preparation of what the build reads, recorded so the recipe says all that went in)."""
        compression = state.captured.source.compression if state.captured is not None else ()
        return replace(Recipe.from_quant_options(scheme), compression=compression)

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

    def build(self, inputs: BuildInputs, recipe: Recipe, out: Path) -> Candidate:
        """Build ``recipe`` from ``inputs`` (this format's :class:`BuildInputs`) into ``out``. The recipe is checked
        against ``recipe_support`` first: a recipe this format cannot build raises :class:`UsageError` before any
        file is written."""
        self.check_recipe(recipe)
        out.parent.mkdir(parents=True, exist_ok=True)
        return self._build(inputs, recipe, out)

    @abstractmethod
    def _build(self, inputs: BuildInputs, recipe: Recipe, out: Path) -> Candidate:
        """The format's build of a checked recipe (called by :meth:`build` only)."""


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
