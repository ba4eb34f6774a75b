"""Frozen configs: validation raises typed errors; edgeq.toml round-trips into a PipelineConfig."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeq.config import Budget, PipelineConfig, QuantOptions
from edgeq.config_file import load_config
from edgeq.errors import UsageError


def test_configs_are_frozen() -> None:
    cfg = PipelineConfig(model="m:f", calib="c.npz", output=Path("o"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.target = "x"  # type: ignore[misc]


def test_quant_resolution_keeps_user_choices() -> None:
    user = QuantOptions(per_channel=False)
    defaults = QuantOptions(calibration="entropy", per_channel=True, activation_type="int8", weight_type="int8",
                            reduce_range=False)
    r = user.resolved(defaults)
    assert r.per_channel is False and r.calibration == "entropy" and r.activation_type == "int8"


def test_budget_merge() -> None:
    b = Budget(min_cosine=0.99).merged_over(Budget(min_cosine=0.9, max_accuracy_drop=1.0))
    assert b == Budget(min_cosine=0.99, max_accuracy_drop=1.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(formats=()), "no output format"),
    (dict(formats=("onnx", "onnx")), "listed twice"),
    (dict(formats=("tflite",)), "unknown format"),
    (dict(eval_fraction=1.5), "eval fraction"),
])
def test_pipeline_config_validation(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message):
        PipelineConfig(model="m:f", calib="c.npz", output=Path("o"), **kwargs)


def test_quant_option_validation() -> None:
    with pytest.raises(UsageError, match="unknown calibration method 'kl'"):
        QuantOptions(calibration="kl")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="static or dynamic"):
        QuantOptions(mode="qat")  # type: ignore[arg-type]


def test_load_config(tmp_path: Path) -> None:
    p = tmp_path / "edgeq.toml"
    p.write_text('model = "pkg.m:f"\ncalib = "c.npz"\noutput = "out"\ntarget = "raspberry-pi-5"\n'
                 'formats = ["onnx", "pte"]\n[quant]\ncalibration = "percentile"\nnodes_to_exclude = ["n1"]\n'
                 '[budget]\nmax_accuracy_drop = 0.5\n')
    cfg = load_config(p)
    assert cfg.formats == ("onnx", "pte") and cfg.quant.calibration == "percentile"
    assert cfg.quant.nodes_to_exclude == ("n1",) and cfg.budget.max_accuracy_drop == 0.5
    p.write_text('model = "m:f"\ncalib = "c"\noutput = "o"\ntargte = "x"\n')
    with pytest.raises(UsageError, match="unknown key.*targte"):
        load_config(p)
    p.write_text('model = "m:f"\ncalib = "c"\noutput = "o"\n[budget]\nmax_acc = 1\n')
    with pytest.raises(UsageError, match="max_acc"):
        load_config(p)


@pytest.mark.parametrize("opset", [1, 17, 99])
def test_opset_outside_the_exporters_range_is_refused(opset: int) -> None:
    from edgeq.config import PipelineConfig
    from edgeq.errors import UsageError

    with pytest.raises(UsageError, match=f"--opset {opset} is not supported"):
        PipelineConfig(model="m:f", calib="c.npz", output=Path("o"), opset=opset)
