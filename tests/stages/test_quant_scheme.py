"""quant-scheme: the target TOML's [onnx] table decides (S8S8 on ARM64, U8S8 + reduce_range on x86); user choices win."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
from onnx import numpy_helper

from edgeq.config import QuantOptions
from edgeq.pipeline.stage import get_stage
from edgeq.pipeline.state import BuildState
from edgeq.targets import load_target


def _run(target, quant=None):  # type: ignore[no-untyped-def]
    ctx = BuildState(target=target, fmt="onnx", workdir=Path("."), quant=quant or QuantOptions())
    return get_stage("quant-scheme").run(ctx)


def test_scheme_per_isa() -> None:
    arm = _run(load_target("raspberry-pi-4"))
    assert arm.details["chosen"] == {"activation_type": "int8", "weight_type": "int8", "per_channel": True,
                                     "reduce_range": False, "calibration": "minmax"}
    assert "NEON" in arm.summary and "SDOT" not in arm.summary
    assert "SDOT" in _run(load_target("raspberry-pi-5")).summary
    assert "I8MM" in _run(load_target("android-arm64-i8mm")).summary
    x86 = _run(load_target("x86-64"))
    assert x86.details["chosen"]["activation_type"] == "uint8" and x86.details["chosen"]["reduce_range"] is True


def test_the_toml_decides_not_code() -> None:
    """No per-ISA override in code: a VNNI CPU keeps the TOML's reduce_range until the TOML says otherwise."""
    t = load_target("x86-64")
    vnni = dataclasses.replace(t, cpu=dataclasses.replace(t.cpu, features=("avx2", "avx512_vnni")))
    assert _run(vnni).details["chosen"]["reduce_range"] is True
    edited = dataclasses.replace(vnni, onnx=dataclasses.replace(t.onnx, reduce_range=False, reason="VNNI"))
    res = _run(edited)
    assert res.details["chosen"]["reduce_range"] is False and res.summary == "VNNI"


def test_user_choice_wins() -> None:
    res = _run(load_target("raspberry-pi-5"), QuantOptions(activation_type="uint8"))
    assert res.state is not None and res.state.quant.activation_type == "uint8"
    assert res.details["user_overrides"] == ["activation_type"]


def test_scheme_reaches_the_shipped_model(android_export) -> None:  # type: ignore[no-untyped-def]
    """ARM target: the activation QuantizeLinear zero points in the shipped INT8 model are int8."""
    m = onnx.load(str(android_export.output / "model.int8.onnx"))
    inits = {t.name: t for t in m.graph.initializer}
    zps = [numpy_helper.to_array(inits[n.input[2]]) for n in m.graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype.name == "int8" for z in zps)
    logged = android_export.manifest["passes"][0]
    assert logged["name"] == "quant-scheme" and logged["stage"] == "configure"
