"""The language-model build path: ``get_llm_builder(fmt).build(inputs, recipe, out)`` returns a
:class:`edgeq.pipeline.candidate.Candidate`, as a tensor format's ``FormatBackend.build`` does
(:mod:`edgeq.backends.base`).

Each format's :class:`LlmBuilder` declares what it builds (``support``: the :mod:`edgeq.llm.support` declaration)
and checks the recipe against it first (:func:`edgeq.llm.support.check_llm_recipe`), so a recipe it cannot build is
refused with a :class:`UsageError` before any file is written. It then converts the recipe to the ladder's
:class:`edgeq.llm.config.Variant` (lossless) and runs the format's builder: onnxruntime-genai's
(:func:`edgeq.llm.onnx_export.build_onnx`, from a GPTQ-rounded copy of the HF folder for a ``gptq`` recipe) or the
torchao + XNNPACK lowering (:func:`edgeq.llm.pte_export.build_pte`). ``recipe=None`` is the float build.

An ONNX LM is a folder (``model.onnx``, ``model.onnx.data``, ``genai_config.json``, the tokenizer files): the
candidate's ``files`` are all of them, ``model.onnx`` first; its ``bytes`` are the graph and weights
(``model.onnx*``), the size the ladder compares with the float weights. The candidate's runner scores token windows
(an ``.npz`` with ``windows``) into per-token NLL and argmax.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeq.errors import UsageError
from edgeq.jsontypes import JSONObject
from edgeq.llm.config import Variant
from edgeq.llm.gptq import gptq_folder
from edgeq.llm.metrics import score
from edgeq.llm.onnx_export import build_onnx, folder_bytes
from edgeq.llm.pte_export import PteLowering, build_pte
from edgeq.llm.runners import open_runner
from edgeq.llm.source import LoadedLM
from edgeq.llm.support import LLM_SUPPORT, check_llm_recipe
from edgeq.pipeline.candidate import Candidate, HostProgram
from edgeq.recipe import Recipe, RecipeSupport
from edgeq.validate.runners.base import RunResult

__all__ = ["LlmBuildInputs", "LlmBuilder", "get_llm_builder", "onnx_source", "quantization_record"]


@dataclass(frozen=True)
class LlmBuildInputs:
    """What an LM build reads besides the recipe: the loaded model, the float HF folder the ONNX builder reads
    (None when ONNX is not built), the calibration token windows (GPTQ and SmoothQuant), the cache directory (the
    builder's and the GPTQ-rounded folders), the ``.pte``'s static KV-cache length and how it is lowered. The LM
    export (``edgeq.llm.measure.build_inputs``) and a rebuild from a manifest construct the same record."""

    lm: LoadedLM = field(compare=False)
    hf_folder: Path | None
    # None: a recipe that reads them (gptq, smoothquant) is refused
    calib_windows: np.ndarray | None = field(compare=False)
    cache: Path
    max_context: int
    lowering: PteLowering = PteLowering()


def quantization_record(v: Variant) -> JSONObject | None:
    """An artifact's ``quantization``: the recipe it is built from (``Variant.from_recipe(format, recipe)`` builds
    it again, byte for byte), its scheme, and the ladder's name for it; None for the float build."""
    recipe = v.to_recipe()
    if recipe is None:
        return None
    return {"format": v.format, "scheme": recipe.scheme, "variant": v.name, "recipe": recipe.to_dict()}


def onnx_source(lm: LoadedLM, hf_folder: Path, calib: np.ndarray | None, v: Variant, cache: Path) -> Path:
    """The HF folder the builder reads for V: the float one, or for a GPTQ variant a GPTQ-rounded copy (edgeq.llm.gptq,
    rounded on the calibration windows CALIB and cached under CACHE per group and symmetry)."""
    if v.algo != "gptq":
        return hf_folder
    if calib is None:
        raise UsageError(f"{v.name}: GPTQ rounds on calibration windows, and none were given",
                         "pass calib_windows in LlmBuildInputs")
    sym = "sym" if v.symmetric else "asym"
    return gptq_folder(lm, calib, v.group, v.symmetric, cache / f"gptq-g{v.group}-{sym}-{len(calib)}w")


def _window_scorer(fmt: str) -> HostProgram:
    """How this machine runs an LM candidate: the token windows of an ``.npz`` (``windows``) through the format's
    runner, full sequence per window; outputs the per-token NLL and argmax (as ``validation/reference.npz``)."""

    def run(artifact: Path, inputs: Path, workdir: Path) -> RunResult:
        del workdir  # the runners keep nothing on disk
        with np.load(inputs) as data:
            windows = np.asarray(data["windows"], dtype=np.int64)
        t0 = time.perf_counter()
        got = score(open_runner(artifact.parent if fmt == "onnx" else artifact, fmt), windows)
        ms = (time.perf_counter() - t0) * 1000 / max(len(windows), 1)
        return RunResult({"nll": got.nll, "argmax": got.argmax}, round(ms, 3), "host",
                         "onnxruntime" if fmt == "onnx" else "executorch-pybind")

    return run


class LlmBuilder(ABC):
    name: ClassVar[str]
    support: ClassVar[RecipeSupport]  # the recipes this format's LM build builds; check_recipe refuses the rest

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise :class:`UsageError` (the ingredient, why, the fix) for a recipe this format cannot build."""
        check_llm_recipe(self.name, recipe)

    def build(self, inputs: LlmBuildInputs, recipe: Recipe | None, out: Path) -> Candidate:
        """Build ``recipe`` (None: the float model) into ``out`` (ONNX: a folder; ``.pte``: the file). The recipe is
        checked first: one this format cannot build raises :class:`UsageError` before any file is written."""
        if recipe is not None:
            self.check_recipe(recipe)
        v = Variant.from_recipe(self.name, recipe)
        out.parent.mkdir(parents=True, exist_ok=True)
        files = self._build(inputs, v, out)
        size = folder_bytes(out) if self.name == "onnx" else files[0].stat().st_size
        return Candidate(self.name, files, size, recipe, quantization_record(v) or {}, _window_scorer(self.name),
                         details={"variant": v.name})

    @abstractmethod
    def _build(self, inputs: LlmBuildInputs, v: Variant, out: Path) -> tuple[Path, ...]:
        """The format's build of a checked variant; its files, the program a runner loads first."""


_BUILDERS: dict[str, type[LlmBuilder]] = {}


def register_llm_builder(cls: type[LlmBuilder]) -> type[LlmBuilder]:
    if cls.name in _BUILDERS:
        raise UsageError(f"LM builder {cls.name!r} registered twice")
    _BUILDERS[cls.name] = cls
    return cls


def get_llm_builder(fmt: str) -> LlmBuilder:
    if fmt not in _BUILDERS:
        raise UsageError(f"unknown format {fmt!r} for text generation", f"use one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[fmt]()


@register_llm_builder
class OnnxLlmBuilder(LlmBuilder):
    name = "onnx"
    support = LLM_SUPPORT["onnx"]

    def _build(self, inputs: LlmBuildInputs, v: Variant, out: Path) -> tuple[Path, ...]:
        if inputs.hf_folder is None:
            raise UsageError("the ONNX LM build reads the model's HF folder (LlmBuildInputs.hf_folder)",
                             "save it with edgeq.llm.source.save_hf_folder")
        src = onnx_source(inputs.lm, inputs.hf_folder, inputs.calib_windows, v, inputs.cache)
        folder = build_onnx(src, out, v, inputs.cache)
        main = folder / "model.onnx"
        return (main, *sorted(p for p in folder.iterdir() if p.is_file() and p != main))


@register_llm_builder
class PteLlmBuilder(LlmBuilder):
    name = "pte"
    support = LLM_SUPPORT["pte"]

    def _build(self, inputs: LlmBuildInputs, v: Variant, out: Path) -> tuple[Path, ...]:
        return (build_pte(inputs.lm.model, inputs.lm.tokenizer, out, v, inputs.max_context, inputs.calib_windows,
                          inputs.lowering),)
