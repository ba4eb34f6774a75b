"""The ONNX search's moves are data (edgeq.search.onnx_moves): which stages a graph gets, in which order, what each
move builds on, and that a new move is one class plus one line in the list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgeq.config import QuantOptions, SearchOptions
from edgeq.search.onnx_moves import ONNX_MOVES, LadderView, cumulative_stages, stages
from edgeq.search.sensitivity import NodeSensitivity
from edgeq.search.trial import Trial, TrialConfig

BASE = QuantOptions(calibration="minmax", per_channel=False)


def _view(best: Trial | None = None, **kw: object) -> LadderView:
    ranking = [NodeSensitivity(f"n{i}", "Conv", f"t{i}", 30.0, 20.0, 40.0, 0.1 - i / 100) for i in range(5)]
    facts: dict[str, object] = {"base": BASE, "options": SearchOptions(), "patterns": {"softmax": ["sm"]},
                                "linears": (), "linear_first": False, "first_dynamic": False,
                                "convs_and_linears": True, "best_static": lambda: best,
                                "rank_nodes": lambda t: ranking}
    facts.update(kw)
    return LadderView(**facts)  # type: ignore[arg-type]


def test_a_conv_net_climbs_the_static_moves_in_order() -> None:
    got = [(stage, [c.label() for c in cfgs]) for stage, cfgs in stages(_view())]
    assert [s for s, _ in got] == ["baseline", "calibration", "calibration", "hybrid", "patterns"]
    assert got[1][1] == ["percentile, per-tensor", "entropy, per-tensor"]  # the other calibration methods
    assert "per-channel" in got[2][1][0]  # then per-tensor -> per-channel weights
    # no measured trial yet: nothing to rank, so no sensitivity move


def test_later_moves_build_on_the_best_trial() -> None:
    best_cfg = TrialConfig("entropy", True)
    best = Trial(3, "calibration", best_cfg, BASE, path=Path("t3.onnx"))
    by_stage = dict(stages(_view(best)))
    assert "calibration" in by_stage and by_stage["hybrid"] == [replace(best_cfg, hybrid=True)]
    assert by_stage["patterns"] == [replace(best_cfg, exclude=("softmax",))]
    sens = by_stage["sensitivity"]  # 16-bit before float for each k, k = 2, 4 (5 ranked nodes)
    assert [(c.int16_top_k, c.float_top_k) for c in sens] == [(2, 0), (0, 2), (4, 0), (0, 4)]
    assert all(c.calibration == "entropy" and c.per_channel for c in sens)


def test_a_linear_dominated_graph_starts_with_dynamic_and_mixed_precision() -> None:
    view = _view(linear_first=True, linears=("l0", "l1", "l2"), convs_and_linears=False, patterns={})
    got = list(stages(view))
    assert [s for s, _ in got][:4] == ["baseline", "dynamic", "per-token", "mixed-precision"]
    assert got[2][1] == [TrialConfig("minmax", True, dynamic=True, per_token=True)]
    assert "per-token activations" in got[2][1][0].label()
    assert [c.fp16_linears for c in got[3][1]] == [1, 2, 3]  # bounded by the linears there are
    first_dynamic = [s for s, _ in stages(replace(view, first_dynamic=True))]
    # the first model was the predicted (per-token) dynamic one: no per-tensor trial, the static baseline after
    assert first_dynamic[:2] == ["per-token", "mixed-precision"]
    assert "hybrid" not in first_dynamic


def test_cumulative_stages_are_declared_by_the_moves() -> None:
    assert cumulative_stages() == {"mixed-precision", "patterns", "sensitivity"}


class _PerTensorEntropy:
    """A new move, as a user of the extension point writes one."""

    stage, cumulative = "calibration", False

    def propose(self, view: LadderView) -> list[TrialConfig]:
        return [TrialConfig("entropy", False, exclude=("softmax",))]


def test_a_new_move_is_one_class_and_one_line() -> None:
    moves = (*ONNX_MOVES[:6], _PerTensorEntropy(), *ONNX_MOVES[6:])
    got = list(stages(_view(), moves))
    assert got[2] == ("calibration", [TrialConfig("entropy", False, exclude=("softmax",))])  # after the methods


def test_mixed_precision_builds_on_the_best_dynamic_trial() -> None:
    """Per token came closer than per tensor (a held-out encoder's outlier tokens): the linears kept float are
    added to the per-token model."""
    per_token = Trial(2, "per-token", TrialConfig("minmax", True, dynamic=True, per_token=True), BASE)
    view = _view(linear_first=True, linears=("l0", "l1"), convs_and_linears=False, patterns={},
                 best_dynamic=lambda: per_token)
    mixed = dict(stages(view))["mixed-precision"]
    assert [(c.fp16_linears, c.per_token) for c in mixed] == [(1, True), (2, True)]
