"""Target profiles: every bundled file is valid and self-consistent; broken files give clear errors; CLI."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.errors import TargetError
from edgeq.pipeline.pipeline import Pipeline
from edgeq.pipeline.stage import get_stage
from edgeq.targets import list_targets, load_target, targets_dir
from edgeq.targetspec import ExecutorchSpec, OnnxScheme

REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "raspberry-pi-zero-2w", "android-arm64", "android-arm64-i8mm",
            "ios-arm64", "x86-64"}
# MIDR part numbers (Linux arch/arm64/include/asm/cputype.h) for the cores the targets name or stand in for.
ARM_PARTS = {"Cortex-A53": "0xd03", "Cortex-A72": "0xd08", "Cortex-A76": "0xd0b", "Cortex-A710": "0xd47"}
PI4 = (targets_dir() / "raspberry-pi-4.toml").read_text()


def _legacy(text: str) -> str:
    """The profile as written before ``Target.formats``: top-level [onnx] / [executorch] tables."""
    return text.replace("[formats.onnx]", "[onnx]").replace("[formats.executorch]", "[executorch]")


def test_bundled_targets_load_and_are_consistent() -> None:
    assert set(list_targets()) >= REQUIRED
    for name in list_targets():
        t = load_target(name)
        assert t.name == name and t.sources, name
        assert t.passes[0] == "quant-scheme" and t.passes[-1] == "budget-check", name
        assert Pipeline.for_target(t).stages  # the order validates (phases, readers after writers)
        if t.is_arm:
            assert t.spec(OnnxScheme).activation_type == "int8" and not t.spec(OnnxScheme).reduce_range
            part = ARM_PARTS.get(t.cpu.name)
            if part:  # the Apple core is emulated as a Cortex-A76 stand-in (documented in the file)
                assert t.cpu.cpuinfo_part == part, name
            assert t.cpu.cpuinfo_implementer == "0x41"
        if t.os in ("android", "ios"):
            assert {"fixed-shapes", "ort-format", "mobile-usability", "fp16-variant"} <= set(t.passes)
            assert t.gpu_delegate
        if t.os == "android":
            assert t.spec(ExecutorchSpec).segment_alignment == 16384 and "executorch-layout" in t.passes


def test_hardware_facts_per_target() -> None:
    pi4, pi5, zero = load_target("raspberry-pi-4"), load_target("raspberry-pi-5"), load_target("raspberry-pi-zero-2w")
    assert "asimddp" not in pi4.cpu.features and pi4.cpu.isa == "ARMv8.0-A"
    assert {"asimddp", "asimdhp"} <= set(pi5.cpu.features) and pi5.cpu.isa == "ARMv8.2-A"
    assert zero.cpu.name == "Cortex-A53" and zero.ram_mb <= 512 and zero.cpu.qemu_model == "cortex-a53"
    i8 = load_target("android-arm64-i8mm")
    assert "i8mm" in i8.cpu.features and i8.cpu.qemu_model == "max"
    assert "asimddp" in load_target("android-arm64").cpu.features
    assert "NNAPI" in load_target("android-arm64").spec(OnnxScheme).execution_providers
    assert "CoreML" in load_target("ios-arm64").spec(OnnxScheme).execution_providers
    x86 = load_target("x86-64")
    x86_onnx = x86.spec(OnnxScheme)
    assert x86_onnx.activation_type == "uint8" and x86_onnx.reduce_range and not x86.is_arm


@pytest.mark.skipif(shutil.which("qemu-aarch64-static") is None, reason="qemu-user-static not installed")
def test_qemu_models_exist() -> None:
    out = subprocess.run(["qemu-aarch64-static", "-cpu", "help"], capture_output=True, text=True).stdout.split()
    for name in list_targets():
        t = load_target(name)
        if t.is_arm:
            assert t.cpu.qemu_model in out, (name, t.cpu.qemu_model)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace('cores = 4', 'cores = 4\nturbo = true'), "[cpu]: unknown key(s) turbo"),
    (lambda s: s + '\nlatency_ms = 3\n', "unknown key(s) latency_ms"),
    (lambda s: s.replace('ram_mb = 4096', ''), "missing key(s) ram_mb"),
    (lambda s: s.replace('cpuinfo_part = "0xd08"\n', ''), "[cpu]: ARM targets need cpuinfo_part"),
    (lambda s: s.replace('cores = 4', 'cores = "four"'), "[cpu]: key 'cores' must be int"),
    (lambda s: s.replace('per_channel = true', 'per_channel = "yes"'), "[formats.onnx]: key 'per_channel' must be bool"),
    (lambda s: s.replace('"quant-scheme",', '"quant-scheme", "make-it-fast",'), "unknown pass(es) make-it-fast"),
    (lambda s: s.replace('"budget-check"]', '"budget-check", "budget-check"]'), "listed twice: budget-check"),
    (lambda s: s.replace('partitioner = "xnnpack"', 'partitioner = "coreml"'), "unknown partitioner 'coreml'"),
    (lambda s: s.replace('[formats.onnx]\n', '[formats.onnx]\nquant_format = "QDQ"\n'), "key 'quant_format' is no longer part"),
    (lambda s: _legacy(s).replace('storage_mb = ', 'formats = ["onnx"]\nstorage_mb = '),
     "key 'formats' is no longer part"),
    (lambda s: s.replace('[formats.executorch]', '[formats.tflite]\nversion = 2\n\n[formats.executorch]'),
     "unknown format table(s) [formats.tflite]"),
    (lambda s: s.replace('[formats.executorch]\npartitioner = "xnnpack"\n', ''), "missing table(s) [formats.executorch]"),
    (lambda s: s.replace('[formats.executorch]', '[executorch]'), "both a [formats] table and a top-level [executorch]"),
    (lambda s: _legacy(s).replace('per_channel = true', 'per_channel = "yes"'), "[onnx]: key 'per_channel' must be bool"),
    (lambda s: s.replace('"quant-scheme",', '"budget-check", "quant-scheme",')
     .replace(', "budget-check"]', ']'), "'quant-scheme' (configure) is listed after 'budget-check' (artifact)"),
    (lambda s: s.replace('os = "linux"', 'os = "windows"'), "'os' must be one of"),
    (lambda s: s.replace('[formats.executorch]\npartitioner = "xnnpack"', '[formats.executorch]\npartitioner = "xnnpack"\n'
                         'segment_alignment = 1000'), "power of two"),
    (lambda s: s.replace('name = "raspberry-pi-4"', 'name = "raspberry-pi-4'), "not valid TOML"),
])
def test_broken_file_names_file_and_key(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    text = edit(PI4)
    assert text != PI4
    p = _write(tmp_path, text)
    with pytest.raises(TargetError) as e:
        load_target(str(p))
    assert str(p) in e.value.cause and message in e.value.cause, e.value.cause


def test_user_file_and_unknown_name(tmp_path: Path) -> None:
    p = _write(tmp_path, PI4.replace('name = "raspberry-pi-4"', 'name = "my-board"').replace("ram_mb = 4096",
                                                                                             "ram_mb = 2048"))
    t = load_target(str(p))
    assert t.name == "my-board" and t.ram_mb == 2048 and t.path == str(p)
    with pytest.raises(TargetError, match="did you mean 'raspberry-pi-5'"):
        load_target("raspbery-pi-5")
    with pytest.raises(TargetError, match="target file not found"):
        load_target(str(tmp_path / "nope.toml"))


def test_old_layout_still_reads(tmp_path: Path) -> None:
    """A user profile with top-level [onnx] / [executorch] tables gives the same target as [formats.*] tables."""
    old, new = load_target(str(_write(tmp_path, _legacy(PI4)))), load_target("raspberry-pi-4")
    assert old.formats == new.formats and set(old.formats) == {"onnx", "executorch"}
    assert old.spec(ExecutorchSpec).partitioner == "xnnpack" and old.quant_defaults() == new.quant_defaults()


def test_a_missing_format_table_is_a_typed_error() -> None:
    t = load_target("raspberry-pi-4")
    bare = dataclasses.replace(t, formats={"onnx": t.spec(OnnxScheme)})
    with pytest.raises(TargetError, match=r"no \[formats.executorch\] table"):
        bare.spec(ExecutorchSpec)
    assert bare.with_spec(t.spec(ExecutorchSpec)).formats == t.formats


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_list_and_show(tmp_path: Path) -> None:
    r = _cli("targets")
    assert r.returncode == 0
    for name in REQUIRED:
        assert name in r.stdout
    assert "dotprod,i8mm" in r.stdout
    r = _cli("targets", "show", "raspberry-pi-zero-2w")
    assert r.returncode == 0 and "Cortex-A53" in r.stdout and "budget-check" in r.stdout and "sources:" in r.stdout
    r = _cli("targets", "show", "android-arm64", "--toml")
    assert r.returncode == 0 and r.stdout == (targets_dir() / "android-arm64.toml").read_text()
    r = _cli("targets", "show", str(_write(tmp_path, PI4.replace("cores = 4", "cores = 0"))))
    assert r.returncode == 2 and "'cores' must be >= 1" in r.stderr
    r = _cli("targets", "show", "nope")
    assert r.returncode == 2 and "unknown target 'nope'" in r.stderr


def test_duplicate_pass_name_is_an_error() -> None:
    from edgeq.errors import PassError
    from edgeq.pipeline.stage import StageKind, register_stage, stage_names

    assert "budget-check" in stage_names()  # load the bundled stages first
    with pytest.raises(PassError, match="'budget-check' is registered twice"):
        register_stage("budget-check", StageKind.CHECK, "artifact", formats=("onnx",),
                       description="again")(lambda ctx: None)  # type: ignore[arg-type,return-value]
    assert get_stage("budget-check").fn.__module__ == "edgeq.stages.budget_check"
