"""quant-scheme: S8S8 per-channel on ARM64, U8S8 + reduce_range on x86 without VNNI, S8S8 with it; user choices win."""

from __future__ import annotations

import dataclasses

import onnx
from onnx import numpy_helper

from edgeq.config import QuantOptions
from edgeq.passes.registry import PassContext, get_pass
from edgeq.targets import load_target


def _run(target, quant=None):  # type: ignore[no-untyped-def]
    ctx = PassContext(target=target, fmt="onnx", workdir=None, quant=quant or QuantOptions())  # type: ignore[arg-type]
    return get_pass("quant-scheme").run(ctx)


def test_scheme_per_isa(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_features", lambda: frozenset({"avx2"}))
    arm = _run(load_target("raspberry-pi-4"))
    assert arm.details["chosen"] == {"activation_type": "int8", "weight_type": "int8", "per_channel": True,
                                     "reduce_range": False}
    assert "NEON" in arm.summary and "SDOT" not in arm.summary
    assert "SDOT" in _run(load_target("raspberry-pi-5")).summary
    assert "I8MM" in _run(load_target("android-arm64-i8mm")).summary
    x86 = _run(load_target("x86-64"))
    assert x86.details["chosen"]["activation_type"] == "uint8" and x86.details["chosen"]["reduce_range"] is True
    t = load_target("x86-64")
    vnni = dataclasses.replace(t, cpu=dataclasses.replace(t.cpu, features=("avx2", "avx512_vnni")))
    assert _run(vnni).details["chosen"]["reduce_range"] is False


def test_x86_scheme_follows_the_host_vnni(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """x86-64 names both schemes in its TOML; the host's VNNI flag picks S8S8 without reduce_range."""
    t = load_target("x86-64")
    assert t.onnx.if_host_has and t.onnx.if_host_activation_type == "int8"
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_arch", lambda: "x86_64")
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_features", lambda: frozenset({"avx2", "avx512_vnni"}))
    res = _run(t)
    assert res.details["chosen"] == {"activation_type": "int8", "weight_type": "int8", "per_channel": True,
                                     "reduce_range": False}
    assert res.details["host_condition"] == {"if_host_has": ["avx512_vnni", "avx_vnni"], "host_arch": "x86_64",
                                             "host_has": ["avx512_vnni"], "met": True}
    assert "VNNI" in res.summary
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_features", lambda: frozenset({"avx2"}))
    res = _run(t)
    assert res.details["chosen"]["activation_type"] == "uint8" and res.details["chosen"]["reduce_range"] is True
    assert res.details["host_condition"]["met"] is False
    # An ARM machine exporting for the x86-64 target must not read its own flags as x86 ones.
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_arch", lambda: "aarch64")
    monkeypatch.setattr("edgeq.passes.quant_scheme.host_features", lambda: frozenset({"avx512_vnni"}))
    assert _run(t).details["chosen"]["reduce_range"] is True


def test_user_choice_wins() -> None:
    res = _run(load_target("raspberry-pi-5"), QuantOptions(activation_type="uint8"))
    assert res.quant.activation_type == "uint8" and res.details["user_overrides"] == ["activation_type"]


def test_scheme_reaches_the_shipped_model(android_export) -> None:  # type: ignore[no-untyped-def]
    """ARM target: the activation QuantizeLinear zero points in the shipped INT8 model are int8."""
    m = onnx.load(str(android_export.output / "model.int8.onnx"))
    inits = {t.name: t for t in m.graph.initializer}
    zps = [numpy_helper.to_array(inits[n.input[2]]) for n in m.graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype.name == "int8" for z in zps)
    logged = android_export.manifest["passes"][0]
    assert logged["name"] == "quant-scheme" and logged["stage"] == "configure"
