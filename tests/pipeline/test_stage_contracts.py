"""Stage contracts: kinds run in their phases, declared fields only, and a target's order is validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.config import QuantOptions
from edgeq.errors import PassError, PipelineError, TargetError
from edgeq.pipeline.pipeline import Pipeline
from edgeq.pipeline.stage import (
    Declares,
    StageKind,
    StageResult,
    StageSpec,
    get_stage,
    register_stage,
    stage_names,
)
from edgeq.pipeline.state import STATE_FIELDS, BuildState, EtBackendConfig, StateChanges
from edgeq.targets import load_target, targets_dir


def _state(target: str = "android-arm64", fmt: str = "onnx") -> BuildState:
    return BuildState(target=load_target(target), fmt=fmt, workdir=Path("."), quant=QuantOptions())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": StageKind.CHECK, "phase": "pre_quant"}, "a check runs in artifact, not 'pre_quant'"),
    ({"kind": StageKind.TRANSFORM, "phase": "artifact"}, "a transform runs in configure, pre_quant, post_quant"),
    ({"kind": StageKind.TRANSFORM, "phase": "pre_quant", "declares": Declares(reads=("notes",))},
     "unknown BuildState field(s) notes"),
    ({"kind": StageKind.CHECK, "phase": "artifact", "declares": Declares(writes=("artifacts",))},
     "a check may not write artifacts"),
])
def test_registration_checks_kind_phase_and_fields(kwargs, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PassError, match=message.replace("(", r"\(").replace(")", r"\)")):
        register_stage("contract-test", formats=("onnx",), description="x", **kwargs)
    assert "contract-test" not in stage_names()


def test_a_stage_that_writes_an_undeclared_field_fails_loudly() -> None:
    def sneaky(state: BuildState) -> StageResult:
        return StageResult("sneaky", True, "changed the ExecuTorch config", state=state.updated(
            executorch_backend_config=EtBackendConfig(segment_alignment=4096)))

    spec = StageSpec("sneaky", StageKind.TRANSFORM, "pre_quant", ("onnx",), frozenset(), frozenset({"model_path"}),
                     "x", sneaky)
    with pytest.raises(PassError, match="changed executorch_backend_config, which it does not declare"):
        spec.run(_state())


def test_stages_return_a_new_state_and_never_mutate() -> None:
    before = _state(fmt="pte")
    log: list[dict[str, object]] = []
    after = Pipeline.for_target(before.target).run_phase("configure", before, log)
    assert before.executorch_backend_config == EtBackendConfig()
    assert after.executorch_backend_config.kwargs() == {"extract_delegate_segments": True, "segment_alignment": 16384}
    assert [(e["name"], e["kind"], e["stage"]) for e in log] == [("executorch-layout", "transform", "configure")]


def test_state_changes_name_every_build_state_field() -> None:
    """``BuildState.updated`` is typed by ``StateChanges``: a field added to one must be added to the other."""
    assert set(StateChanges.__annotations__) == STATE_FIELDS


def test_a_reader_listed_before_its_writer_is_refused(tmp_path: Path) -> None:
    text = (targets_dir() / "android-arm64.toml").read_text()
    edited = text.replace('"fp16-variant",\n          "ort-format",', '"ort-format",').replace(
        '"budget-check"]', '"budget-check", "fp16-variant"]')
    assert edited != text
    (tmp_path / "t.toml").write_text(edited)
    with pytest.raises(TargetError, match="stage 'mobile-usability' reads artifacts, which 'fp16-variant' writes"):
        load_target(str(tmp_path / "t.toml"))
    with pytest.raises(PipelineError, match="'fp16-variant' reads fixed_shapes, which 'fixed-shapes' writes"):
        Pipeline.from_names(["fp16-variant", "fixed-shapes"])


def test_every_bundled_stage_declares_a_kind_and_its_fields() -> None:
    for name in stage_names():
        spec = get_stage(name)
        assert spec.kind in StageKind and spec.formats and spec.description, name
        if spec.kind is StageKind.EMITTER:
            assert "artifacts" in spec.writes, name
