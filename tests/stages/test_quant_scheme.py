"""quant-scheme: the target TOML's [formats.onnx] table decides (S8S8 on ARM64, U8S8 + reduce_range on x86); user choices win."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
from onnx import numpy_helper

from edgeq.config import QuantOptions
from edgeq.pipeline.stage import get_stage
from edgeq.pipeline.state import BuildState
from edgeq.targets import load_target
from edgeq.targetspec import OnnxScheme


def _run(target, quant=None):  # type: ignore[no-untyped-def]
    ctx = BuildState(target=target, fmt="onnx", workdir=Path("."), quant=quant or QuantOptions())
    return get_stage("quant-scheme").run(ctx)


def test_scheme_per_isa(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_features", lambda: frozenset({"avx2"}))  # no VNNI
    arm = _run(load_target("raspberry-pi-4"))
    assert arm.details["chosen"] == {"activation_type": "int8", "weight_type": "int8", "per_channel": True,
                                     "reduce_range": False, "calibration": "minmax"}
    assert "NEON" in arm.summary and "SDOT" not in arm.summary
    assert "SDOT" in _run(load_target("raspberry-pi-5")).summary
    assert "I8MM" in _run(load_target("android-arm64-i8mm")).summary
    x86 = _run(load_target("x86-64"))
    assert x86.details["chosen"]["activation_type"] == "uint8" and x86.details["chosen"]["reduce_range"] is True


def test_the_toml_decides_not_code(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No per-ISA override in code: a VNNI CPU keeps the TOML's reduce_range until the TOML says otherwise."""
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_features", lambda: frozenset({"avx2"}))
    t = load_target("x86-64")
    vnni = dataclasses.replace(t, cpu=dataclasses.replace(t.cpu, features=("avx2", "avx512_vnni")))
    assert _run(vnni).details["chosen"]["reduce_range"] is True
    edited = vnni.with_spec(dataclasses.replace(t.spec(OnnxScheme), reduce_range=False, reason="VNNI"))
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


def test_editing_the_toml_scheme_changes_the_artifact(digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A copy of x86-64.toml that says U8S8 ships uint8 zero points; the same copy edited to S8S8 ships int8 ones.
    Nothing in code decides (the host-VNNI alternative is removed from both copies so the host cannot)."""
    import edgeq
    from edgeq.targets import targets_dir
    from tests.conftest import DIGITS_MODEL

    text = (targets_dir() / "x86-64.toml").read_text()
    assert 'activation_type = "uint8"' in text
    plain = "\n".join(line for line in text.splitlines() if not line.startswith("if_host_"))
    u8 = tmp_path / "x86-u8s8.toml"
    u8.write_text(plain.replace('name = "x86-64"', 'name = "x86-u8s8"'))
    s8 = tmp_path / "x86-s8s8.toml"
    s8.write_text(plain.replace('activation_type = "uint8"', 'activation_type = "int8"')
                  .replace('name = "x86-64"', 'name = "x86-s8s8"'))
    calib, ev = digits_small
    kw = {"calib": str(calib), "eval": str(ev), "validate_on": ("host",), "max_eval_samples": 32,
          "search": edgeq.SearchOptions(mode="off")}
    before = edgeq.export(DIGITS_MODEL, target=str(u8), output=tmp_path / "u8", **kw)
    after = edgeq.export(DIGITS_MODEL, target=str(s8), output=tmp_path / "s8", **kw)
    assert onnx.TensorProto.UINT8 in _zero_point_types(before.output / "model.int8.onnx")
    zps = _zero_point_types(after.output / "model.int8.onnx")
    assert onnx.TensorProto.UINT8 not in zps and onnx.TensorProto.INT8 in zps
    assert after.artifact("onnx-int8-static").quantization["activation_type"] == "int8"
    assert before.artifact("onnx-int8-static").sha256 != after.artifact("onnx-int8-static").sha256


def test_x86_scheme_follows_the_host_vnni(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """x86-64 names both schemes in its TOML; the host's VNNI flag drops reduce_range. Activations stay uint8 with
    VNNI too: ORT's x86 kernels fuse uint8-activation QDQ only (tests/test_onnx_int8_fusion.py shows the graphs)."""
    t = load_target("x86-64")
    assert t.spec(OnnxScheme).if_host_has and t.spec(OnnxScheme).if_host_activation_type == "uint8"
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_arch", lambda: "x86_64")
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_features", lambda: frozenset({"avx2", "avx512_vnni"}))
    res = _run(t)
    assert res.details["chosen"]["activation_type"] == "uint8" and res.details["chosen"]["reduce_range"] is False
    assert res.details["host_condition"] == {"if_host_has": ["avx512_vnni", "avx_vnni"], "host_arch": "x86_64",
                                             "host_has": ["avx512_vnni"], "met": True}
    assert "VNNI" in res.summary
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_features", lambda: frozenset({"avx2"}))
    res = _run(t)
    assert res.details["chosen"]["activation_type"] == "uint8" and res.details["chosen"]["reduce_range"] is True
    assert res.details["host_condition"]["met"] is False
    # An ARM machine exporting for the x86-64 target must not read its own flags as x86 ones.
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_arch", lambda: "aarch64")
    monkeypatch.setattr("edgeq.stages.quant_scheme.host_features", lambda: frozenset({"avx512_vnni"}))
    assert _run(t).details["chosen"]["reduce_range"] is True
