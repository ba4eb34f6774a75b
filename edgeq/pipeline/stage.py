"""Stages: the three kinds of work a target profile orders, registered by name (a duplicate name is an error).

- ``Transform`` (model -> model, for a format): ``configure`` (options chosen before anything is built),
  ``pre_quant`` (rewrite the float graph), ``post_quant`` (rewrite the quantized graph);
- ``Emitter`` (model -> artifact files), in the ``artifact`` phase;
- ``Check`` (artifacts -> findings, possibly verdict failures), in the ``artifact`` phase.

Each stage declares the :class:`~edgeq.pipeline.state.BuildState` fields it reads and writes. Stages live one per
file in :mod:`edgeq.stages`; :class:`edgeq.pipeline.pipeline.Pipeline` orders and runs them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from edgeq.errors import EdgeqError, PassError, PipelineError
from edgeq.jsontypes import JSONObject
from edgeq.pipeline.state import STATE_FIELDS, BuildState

if TYPE_CHECKING:
    from edgeq.targetspec import Target

Phase = Literal["configure", "pre_quant", "post_quant", "artifact"]
PHASES: tuple[Phase, ...] = ("configure", "pre_quant", "post_quant", "artifact")


class StageKind(StrEnum):
    TRANSFORM = "transform"
    EMITTER = "emitter"
    CHECK = "check"


KIND_PHASES: dict[StageKind, tuple[Phase, ...]] = {
    StageKind.TRANSFORM: ("configure", "pre_quant", "post_quant"),
    StageKind.EMITTER: ("artifact",),
    StageKind.CHECK: ("artifact",),
}
# What each kind may write: a Check reports findings and never changes the build.
KIND_WRITES: dict[StageKind, frozenset[str]] = {
    StageKind.TRANSFORM: frozenset({"model_path", "quant", "fixed_shapes", "executorch_backend_config"}),
    StageKind.EMITTER: frozenset({"artifacts"}),
    StageKind.CHECK: frozenset(),
}


@dataclass(frozen=True)
class StageResult:
    name: str
    changed: bool
    summary: str  # one line for the terminal and the report
    details: JSONObject = field(default_factory=dict)
    state: BuildState | None = None  # the updated state (None: unchanged)
    # A Check's findings about one artifact, recorded in its manifest entry: artifact name -> {details key: value}.
    # Not a build change (a Check writes no state field): ``StageSpec.run`` applies them to the returned state.
    artifact_details: Mapping[str, JSONObject] = field(default_factory=dict)
    verdict_failures: tuple[str, ...] = ()  # e.g. over the storage budget

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "changed": self.changed, "summary": self.summary, "details": self.details,
                "failures": list(self.verdict_failures)}


StageFn = Callable[[BuildState], StageResult]


def _always(target: Target) -> bool:
    return True


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: StageKind
    phase: Phase
    formats: tuple[str, ...]
    reads: frozenset[str]
    writes: frozenset[str]
    description: str
    fn: StageFn
    applies_to: Callable[[Target], bool] = _always

    def run(self, state: BuildState) -> StageResult:
        """Run on ``state``; a stage that writes an undeclared field is a bug and fails loudly."""
        try:
            result = self.fn(state)
        except EdgeqError:
            raise
        except Exception as e:  # noqa: BLE001  re-raised as a typed error naming the stage
            raise PassError(f"stage {self.name!r} failed: {type(e).__name__}: {str(e)[:300]}",
                            f"remove {self.name!r} from the target's pass list to skip it") from e
        if result.state is not None:
            extra = result.state.changed_fields(state) - self.writes
            if extra:
                raise PassError(f"stage {self.name!r} changed {', '.join(sorted(extra))}, which it does not declare "
                                f"in writes={sorted(self.writes)}", "declare the field or stop writing it")
        if result.artifact_details:
            noted = (result.state or state).with_artifact_details(result.artifact_details)
            result = replace(result, state=noted)
        return result


_REGISTRY: dict[str, StageSpec] = {}
_LOADED = False


@dataclass(frozen=True)
class Declares:
    """The :class:`~edgeq.pipeline.state.BuildState` fields a stage reads and writes."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


def register_stage(name: str, kind: StageKind, phase: Phase, formats: tuple[str, ...], description: str,
                   declares: Declares = Declares(),
                   applies_to: Callable[[Target], bool] | None = None) -> Callable[[StageFn], StageFn]:
    """Register ``fn`` as a stage. Kind, phase and the declared fields are checked here, at import time."""
    reads, writes = declares.reads, declares.writes
    if phase not in KIND_PHASES[kind]:
        raise PassError(f"stage {name!r}: a {kind} runs in {', '.join(KIND_PHASES[kind])}, not {phase!r}")
    unknown = sorted((set(reads) | set(writes)) - STATE_FIELDS)
    if unknown:
        raise PassError(f"stage {name!r}: unknown BuildState field(s) {', '.join(unknown)}")
    forbidden = sorted(set(writes) - KIND_WRITES[kind])
    if forbidden:
        raise PassError(f"stage {name!r}: a {kind} may not write {', '.join(forbidden)}")

    def deco(fn: StageFn) -> StageFn:
        if name in _REGISTRY:
            raise PassError(f"stage name {name!r} is registered twice "
                            f"({_REGISTRY[name].fn.__module__} and {fn.__module__})")
        _REGISTRY[name] = StageSpec(name, kind, phase, formats, frozenset(reads), frozenset(writes), description, fn,
                                    applies_to or _always)
        return fn

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    # The stages package is imported by name: it sits above this module, which must not import it statically.
    pkg = importlib.import_module("edgeq.stages")
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"edgeq.stages.{info.name}")


def stage_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_stage(name: str) -> StageSpec:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PassError(f"unknown stage {name!r}", f"registered: {', '.join(sorted(_REGISTRY))}") from None


def validate_order(specs: tuple[StageSpec, ...], where: str) -> None:
    """The one order check: names listed once, phases never backwards, readers after the writers they need."""
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise PipelineError(f"{where}: stage {spec.name!r} is listed twice", "list each stage once")
        seen.add(spec.name)
        if i and PHASES.index(spec.phase) < PHASES.index(specs[i - 1].phase):
            prev = specs[i - 1]
            raise PipelineError(f"{where}: stage {spec.name!r} ({spec.phase}) is listed after {prev.name!r} "
                                f"({prev.phase})", f"phases run in the order {' < '.join(PHASES)}")
        # A field a stage both reads and writes (model_path) is a chain of rewrites: either order is valid.
        consumed = spec.reads - spec.writes
        later = [w for w in specs[i + 1:] if w.writes & consumed and set(w.formats) & set(spec.formats)]
        if later:
            fields = sorted(later[0].writes & consumed)
            raise PipelineError(f"{where}: stage {spec.name!r} reads {', '.join(fields)}, which {later[0].name!r} "
                                "writes, but is listed before it", f"move {spec.name!r} after {later[0].name!r}")
