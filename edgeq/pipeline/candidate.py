"""``Candidate``: what a format backend's ``build(inputs, recipe, out)`` returns (:mod:`edgeq.backends.base`), and a
language-model builder's too (:mod:`edgeq.llm.build`).

It lives beside :class:`edgeq.pipeline.state.BuildState` rather than with the backends because the build state
carries the candidate a backend's ``quantize`` built to its ``emit`` (layers point down: the backends import the
state, never the reverse). ``edgeq.backends.base`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.jsontypes import JSONObject
from edgeq.recipe import Recipe
from edgeq.validate.runners.base import RunResult

HostProgram = Callable[[Path, Path, Path], RunResult]  # (artifact, inputs.npz, workdir) -> outputs + timing


@dataclass(frozen=True)
class Candidate:
    """One built model: its file(s), the recipe it was built from, its build record, and how to run it here."""

    fmt: str
    files: tuple[Path, ...]  # the built file(s); the first is the program a runner loads
    bytes: int  # their size together
    recipe: Recipe | None  # None: a language model's float build (edgeq.llm.build), which quantizes nothing
    # the build record the manifest stores as the artifact's ``quantization`` (``recipe`` included: it rebuilds this;
    # empty for an LM's float build, whose ``quantization`` is null)
    record: JSONObject
    runner: HostProgram  # the backend's load_runner(): how this machine runs the file
    details: JSONObject = field(default_factory=dict)  # format facts for the artifact (.pte: delegation, backend_config)
    # The in-memory program when the format has one: a .pte's ExecutorchProgramManager, which the golden-I/O bundle
    # serializes (lowering it again costs a minute on MiniLM). Typed by the backend that reads it.
    program: object | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.files[0]

    def run(self, inputs: Path, workdir: Path) -> RunResult:
        """Run the candidate on this machine on ``inputs`` (an inputs ``.npz``), writing scratch files to
        ``workdir``."""
        return self.runner(self.path, inputs, workdir)
