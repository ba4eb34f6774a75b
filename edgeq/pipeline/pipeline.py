"""``Pipeline``: a target's stages, in the one order the target profile writes, validated before any work.

Validation (:func:`edgeq.pipeline.stage.validate_order`; a :class:`~edgeq.errors.PipelineError` names the stage):
- every name is a registered stage, listed once;
- phases never go backwards (``configure`` < ``pre_quant`` < ``post_quant`` < ``artifact``);
- a stage that reads a ``BuildState`` field comes after every listed stage that writes it (e.g. ``fp16-variant``
  reads ``fixed_shapes``, so it follows ``fixed-shapes``; ``budget-check`` reads ``artifacts``, so it follows
  every emitter).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edgeq.backends.base import FormatBackend
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.stage import Phase, StageSpec, get_stage, validate_order
from edgeq.pipeline.state import BuildState
from edgeq.targetspec import Target


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[StageSpec, ...]

    @classmethod
    def from_names(cls, names: tuple[str, ...] | list[str], where: str = "pipeline") -> Pipeline:
        specs = tuple(get_stage(n) for n in names)
        validate_order(specs, where)
        return cls(specs)

    @classmethod
    def for_target(cls, target: Target) -> Pipeline:
        return cls.from_names(target.passes, target.path or target.name)

    def applicable(self, target: Target, phase: Phase, fmt: str) -> Iterator[StageSpec]:
        for spec in self.stages:
            if spec.phase == phase and fmt in spec.formats and spec.applies_to(target):
                yield spec

    def run_phase(self, phase: Phase, state: BuildState, log: list[JSONObject]) -> BuildState:
        """Run this phase's stages for ``state.fmt`` in order; each one's record goes to ``log`` (the manifest)."""
        for spec in self.applicable(state.target, phase, state.fmt):
            result = spec.run(state)
            if result.state is not None:
                state = result.state
            log.append({"stage": phase, "kind": str(spec.kind), "format": state.fmt, **result.to_dict()})
        return state


def build_format(backend: FormatBackend, pipeline: Pipeline, state: BuildState,
                 log: list[JSONObject]) -> BuildState:
    """One format's build: the backend's steps with the target's Transform stages between them.

    configure stages -> capture -> pre_quant stages -> quantize(scheme) -> post_quant stages -> emit.
    The artifact phase (Emitters and Checks) runs afterwards, over every artifact built so far.
    """
    backend.preflight(state)
    state = pipeline.run_phase("configure", state, log)
    state = backend.capture(state)
    scheme = backend.scheme(state)
    state = pipeline.run_phase("pre_quant", state, log)
    state = backend.quantize(state, scheme)
    state = pipeline.run_phase("post_quant", state, log)
    return backend.emit(state)
