"""``BuildState``: the typed, frozen record every stage reads and extends (replaces the untyped ``notes``).

A stage never mutates the state it is given; it returns ``state.updated(field=...)`` and declares the fields
it writes, so the pipeline can check that it wrote nothing else and order stages by what they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from edgeq.config import QuantOptions
from edgeq.jsontypes import JSONObject

if TYPE_CHECKING:  # type-only: capture/data/targets import torch and onnx helpers lazily
    import torch

    from edgeq.capture import Captured
    from edgeq.data import Dataset
    from edgeq.manifest import Artifact
    from edgeq.pipeline.candidate import Candidate
    from edgeq.progress import Progress
    from edgeq.targetspec import Target


@dataclass(frozen=True)
class EtBackendConfig:
    """``executorch.exir.ExecutorchBackendConfig`` options a stage chose (``None``/False = ExecuTorch default)."""

    extract_delegate_segments: bool = False
    segment_alignment: int | None = None

    def kwargs(self) -> JSONObject:
        out: JSONObject = {}
        if self.extract_delegate_segments:
            out["extract_delegate_segments"] = True
        if self.segment_alignment is not None:
            out["segment_alignment"] = self.segment_alignment
        return out


class StateChanges(TypedDict, total=False):
    """The fields ``BuildState.updated`` may change, each with its type (the same names as BuildState's)."""

    target: Target
    fmt: str
    workdir: Path
    quant: QuantOptions
    scratch: Path | None
    calib: Dataset | None
    eval: Dataset | None
    captured: Captured | None
    float_captured: Captured | None
    output_names: tuple[str, ...]
    opset: int
    progress: Progress | None
    model_path: Path | None
    program: torch.export.ExportedProgram | None
    float_program: torch.export.ExportedProgram | None
    artifacts: tuple[Artifact, ...]
    fixed_shapes: dict[str, list[int]] | None
    executorch_backend_config: EtBackendConfig
    quantization: JSONObject | None
    candidate: Candidate | None


@dataclass(frozen=True)
class BuildState:
    """One format's build: inputs every stage may read, and the fields stages write (see ``STATE_FIELDS``)."""

    target: Target
    fmt: str
    workdir: Path  # the temporary output folder: artifact paths are relative to it
    quant: QuantOptions
    scratch: Path | None = None  # intermediate files that are not shipped
    calib: Dataset | None = None
    eval: Dataset | None = None
    captured: Captured | None = None
    # The float model the baseline (fp32) artifacts come from, when ``captured`` is a prepared copy of it
    # (outlier-aware PTQ, edgeq.prepare): the float artifacts stay the user's model; only INT8 is built from
    # the prepared one. ``None``: ``captured`` is both.
    float_captured: Captured | None = None
    output_names: tuple[str, ...] = ()
    opset: int = 18
    progress: Progress | None = None
    model_path: Path | None = None  # the graph a Transform rewrites (ONNX)
    # In-memory models a backend carries between its steps.
    program: torch.export.ExportedProgram | None = None
    float_program: torch.export.ExportedProgram | None = None
    artifacts: tuple[Artifact, ...] = ()
    fixed_shapes: dict[str, list[int]] | None = None  # the plan fixed-shapes applied; fp16-variant re-applies it
    executorch_backend_config: EtBackendConfig = field(default_factory=EtBackendConfig)
    quantization: JSONObject | None = None  # what the backend's quantizer recorded
    # The INT8 candidate the backend's quantize built (FormatBackend.build), for its emit: the .pte ships it as built
    # (its lowered program feeds the golden-I/O bundle); ONNX ships ``model_path``, which a post-quant Transform may
    # rewrite.
    candidate: Candidate | None = None

    def updated(self, **changes: Unpack[StateChanges]) -> BuildState:
        return replace(self, **changes)

    def with_artifact_details(self, details: Mapping[str, JSONObject]) -> BuildState:
        """Each artifact named in ``details`` with those keys set in its ``details`` (a new Artifact, same place)."""
        def noted(a: Artifact) -> Artifact:
            for key, value in details.get(a.name, {}).items():
                a = a.with_detail(key, value)
            return a
        return replace(self, artifacts=tuple(noted(a) for a in self.artifacts))

    def changed_fields(self, other: BuildState) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) is not getattr(other, f.name)
                and getattr(self, f.name) != getattr(other, f.name)}


STATE_FIELDS: frozenset[str] = frozenset(f.name for f in fields(BuildState))
