"""quant-scheme: the target TOML's [onnx] table decides (S8S8 on ARM64, U8S8 + reduce_range on x86); user choices win."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
from onnx import numpy_helper

from edgeq.config import QuantOptions
from edgeq.hashing import sha256_bytes
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


def _zero_point_types(path: Path) -> set[int]:
    model = onnx.load(str(path))
    return {i.data_type for i in model.graph.initializer if i.name.endswith("zero_point")}


def test_editing_the_toml_scheme_changes_the_artifact(digits_export, digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """x86-64.toml says U8S8; a copy that says S8S8 ships int8 activation zero points instead. Nothing in code."""
    import edgeq
    from edgeq.targets import targets_dir
    from tests.conftest import DIGITS_MODEL

    text = (targets_dir() / "x86-64.toml").read_text()
    assert 'activation_type = "uint8"' in text
    edited = tmp_path / "x86-s8s8.toml"
    edited.write_text(text.replace('activation_type = "uint8"', 'activation_type = "int8"')
                      .replace('name = "x86-64"', 'name = "x86-s8s8"'))
    calib, ev = digits_small
    res = edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), target=str(edited), validate_on=("host",),
                       max_eval_samples=32, output=tmp_path / "out")
    before = _zero_point_types(digits_export.output / "model.int8.onnx")
    after = _zero_point_types(res.output / "model.int8.onnx")
    assert onnx.TensorProto.UINT8 in before
    assert onnx.TensorProto.UINT8 not in after and onnx.TensorProto.INT8 in after
    assert res.artifact("onnx-int8-static").quantization["activation_type"] == "int8"
    assert sha256_bytes((digits_export.output / "model.int8.onnx").read_bytes()) != res.artifact(
        "onnx-int8-static").sha256
