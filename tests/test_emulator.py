"""ARM emulation end to end: the digits CNN validated on emulated Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5) kernels,
both formats, plus set-up state (no-op, half-finished, tampered) and the faults (not set up, apt unavailable,
qemu crash and timeout)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import edgeq
from edgeq.errors import EmulatorError, TargetError
from edgeq.targets import load_target
from tests.conftest import DIGITS_MODEL, arm_formats, listing

pytestmark = [pytest.mark.emulator]


@pytest.fixture(scope="module")
def env(emulator_env):  # type: ignore[no-untyped-def]
    return emulator_env


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An emulator cache with nothing in it (the rest of the user cache — trained weights — stays shared)."""
    root = tmp_path / "emulator"
    root.mkdir()
    monkeypatch.setenv("EDGEQ_EMULATOR_DIR", str(root))
    return root


def _formats() -> tuple[str, ...]:
    return arm_formats()


# --- cpuinfo ---------------------------------------------------------------------------------------------

def test_cpuinfo_matches_the_target_cpu() -> None:
    from edgeq.emulator.cpuinfo import synthesise

    pi4, pi5 = load_target("raspberry-pi-4"), load_target("raspberry-pi-5")
    text = synthesise(pi4.cpu)
    assert text.count("processor\t:") == pi4.cpu.cores == 4
    assert "CPU part\t: 0xd08" in text and "Features\t: fp asimd evtstrm crc32 cpuid\n" in text
    assert "asimddp" in synthesise(pi5.cpu) and "CPU part\t: 0xd0b" in synthesise(pi5.cpu)
    with pytest.raises(TargetError, match="x86_64"):
        synthesise(load_target("x86-64").cpu)


# --- emulated validation, Pi 4 and Pi 5, both formats ---------------------------------------------------

@pytest.fixture(scope="module")
def pi4_auto(pi4_arm_export):  # type: ignore[no-untyped-def]
    """Default runners for an ARM target once the emulator is set up: host + emulator."""
    return pi4_arm_export


def _by_runner(art: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {v["runner"]: v for v in art["validations"]}


def _assert_arm(m: dict, cpu: str, features: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    validated = [a for a in m["artifacts"] if a["validations"]]
    assert {a["format"] for a in validated} == set(_formats())
    for a in validated:
        v = _by_runner(a)
        assert set(v) == {"host", "emulator"}, a["name"]
        arm, host = v["emulator"], v["host"]
        assert (arm["machine"], arm["cpu_model"], arm["emulated"]) == ("aarch64", cpu, True)
        assert arm["features"] == list(features) and arm["latency_kind"] == "emulated"
        assert "aarch64" in arm["runtime"] and arm["latency_ms"] > 0
        # Same metrics, same budget, same reference: ARM kernels agree closely with the float model here.
        assert arm["metrics"]["samples"] == host["metrics"]["samples"] == 64
        assert arm["metrics"]["cosine_min"] > 0.99 and arm["budget_check"]["passed"]
        if a["precision"] == "fp32":
            assert arm["metrics"]["sqnr_db"] > 80  # float on ARM: only rounding-level differences


def test_pi4_default_validates_on_emulated_cortex_a72(pi4_auto) -> None:  # type: ignore[no-untyped-def]
    m = pi4_auto.manifest
    assert m["config"]["validate_on"] == ["host", "emulator"]
    _assert_arm(m, "cortex-a72", load_target("raspberry-pi-4").cpu.features)
    md = (pi4_auto.output / "report.md").read_text()
    assert "emulator (cortex-a72, emulated)" in md and "emulated, not device speed" in md
    html = (pi4_auto.output / "report.html").read_text()
    assert "cortex-a72" in html and m["verdict"]["passed"]


def test_pi5_validate_command_adds_emulated_cortex_a76(env, digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`edgeq validate OUTDIR --on emulator` on a host-only export records ARM results next to the host ones."""
    from edgeq.cli import main

    calib, ev = digits_small
    out = tmp_path / "pi5"
    edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), target="raspberry-pi-5", formats=_formats(),
                 validate_on=("host",), max_eval_samples=64, output=out)
    hashes = {a["name"]: a["sha256"] for a in json.loads((out / "edgeq.json").read_text())["artifacts"]}
    assert main(["-q", "validate", str(out), "--on", "emulator"]) == 0
    m = json.loads((out / "edgeq.json").read_text())
    _assert_arm(m, "cortex-a76", load_target("raspberry-pi-5").cpu.features)
    assert {a["name"]: a["sha256"] for a in m["artifacts"]} == hashes
    assert m["config"]["validate_on"] == ["host", "emulator"]
    assert not [p for p in tmp_path.iterdir() if "edgeq-tmp" in p.name or "edgeq-old" in p.name]


def test_host_pass_arm_fail_is_flagged_in_the_report(pi4_auto) -> None:  # type: ignore[no-untyped-def]
    """The case emulation exists for: a budget failure only on ARM is called out in the verdict and reports."""
    from edgeq.manifest import Artifact
    from edgeq.report.html import render_html
    from edgeq.report.markdown import render_markdown, terminal_summary
    from edgeq.validate.orchestrate import verdict

    m = json.loads((pi4_auto.output / "edgeq.json").read_text())
    arts = [Artifact.from_dict(a) for a in m["artifacts"]]
    i, int8 = next((i, a) for i, a in enumerate(arts) if a.name == "onnx-int8-static")
    fail = {"passed": False, "failures": ["cosine 0.97 < 0.98"]}
    arts[i] = dataclasses.replace(int8, validations=tuple(  # the emulator's verdict fails; validations are frozen
        dataclasses.replace(v, budget_check={**v.budget_check, **fail}) if v.runner == "emulator" else v
        for v in int8.validations))
    m["artifacts"] = [a.to_dict() for a in arts]
    m["verdict"] = verdict(arts, m["passes"])
    assert not m["verdict"]["passed"]
    assert m["verdict"]["host_passes_arm_fails"] == ["onnx-int8-static: passes on host, fails on emulator cortex-a72"]
    assert "Host passes, ARM fails" in render_markdown(m)
    assert "onnx-int8-static: passes on host, fails on emulator cortex-a72" in render_html(m)
    assert "WARNING host passes but ARM fails" in terminal_summary(m, "out")


# --- set-up state ---------------------------------------------------------------------------------------

def test_setup_twice_is_a_noop_and_status_reports_it(env) -> None:  # type: ignore[no-untyped-def]
    from edgeq.emulator import setup, status

    before = (env.path / "stamp.json").stat().st_mtime_ns
    again = setup()
    assert again.path == env.path  # a no-op: the stamp is not rewritten (no time limit: CI hosts are loaded)
    assert (env.path / "stamp.json").stat().st_mtime_ns == before
    st = status(verify=True)
    assert st["ready"] and st["problem"] is None and st["files"] > 1000
    assert {w["file"].split("-")[0] for w in st["wheels"]} == {"onnxruntime", "numpy", "executorch"}
    assert (env.executorch_root / "lib" / "libexecutorch.so").is_file()
    assert (env.executorch_root / "share" / "cmake" / "executorch-config.cmake").is_file()


def test_half_finished_and_tampered_setups_are_detected(env, empty_cache: Path) -> None:  # type: ignore[no-untyped-def]
    """A copy without the completion stamp is half-finished; a changed file fails hash verification."""
    from edgeq.emulator import load, status, sysroot

    d = sysroot.env_dir()
    if subprocess.run(["cp", "-al", str(env.path), str(d)]).returncode != 0:  # hard links: cheap, never written through
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["cp", "-a", str(env.path), str(d)], check=True)  # another filesystem: a real copy
    os.unlink(d / "stamp.json")
    st = status()
    assert st["half_finished"] and not st["ready"]
    with pytest.raises(EmulatorError, match="half-finished"):
        load()
    shutil.copy(env.path / "stamp.json", d / "stamp.json")
    assert status(verify=True)["ready"]
    victim = d / "site" / "onnxruntime" / "__init__.py"
    text = victim.read_text()
    victim.unlink()  # replace (not modify) the hard-linked file
    victim.write_text(text + "\n# tampered\n")
    st = status(verify=True)
    assert not st["ready"] and "changed site/onnxruntime/__init__.py" in st["problem"]


# --- faults ---------------------------------------------------------------------------------------------

def test_not_set_up_is_a_typed_error_and_writes_nothing(empty_cache: Path, digits_small, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from edgeq.cli import main

    calib, ev = digits_small
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    rc = main(["-q", "export", DIGITS_MODEL, "--calib", str(calib), "--eval", str(ev), "--target", "raspberry-pi-4",
               "--validate-on", "emulator", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "emulator environment is not set up" in err and "edgeq emulator setup" in err
    assert listing(work) == [] and listing(empty_cache) == []


def test_auto_without_emulator_falls_back_to_host_with_a_note(empty_cache: Path, digits_small, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from edgeq.api import resolve_runners
    from edgeq.config import PipelineConfig
    from edgeq.progress import Progress

    calib, _ = digits_small
    cfg = PipelineConfig(model=DIGITS_MODEL, calib=str(calib), output=tmp_path / "o", target="raspberry-pi-4")
    assert cfg.validate_on == ("auto",)
    assert resolve_runners(cfg, load_target("raspberry-pi-4"), Progress()) == ("host",)
    assert "note: validating on the host only; run `edgeq emulator setup`" in capsys.readouterr().err
    assert resolve_runners(cfg, load_target("x86-64"), Progress()) == ("host",)


def test_apt_unavailable_or_failing(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeq.emulator import setup, sysroot

    monkeypatch.setenv("EDGEQ_APT_GET", "/nonexistent/apt-get")
    with pytest.raises(EmulatorError, match="apt-get is not available") as e:
        setup(load_target("raspberry-pi-4"))
    assert "apt" in e.value.hint
    monkeypatch.setenv("EDGEQ_APT_GET", shutil.which("false") or "/bin/false")
    with pytest.raises(EmulatorError, match=r"apt-get update \(arm64 index\) failed"):
        setup(load_target("raspberry-pi-4"))
    assert not sysroot.env_dir().exists() and not list(empty_cache.glob("env-*"))


def test_onnxruntime_needs_the_arm_cpuinfo(env) -> None:  # type: ignore[no-untyped-def]
    """The fact the namespace + cpuinfo exist for: bare qemu-user crashes onnxruntime at import."""
    from edgeq.emulator import qemu

    pi4 = load_target("raspberry-pi-4")
    bare = subprocess.run([env.qemu, "-cpu", "cortex-a72", "-L", str(env.sysroot), str(env.python), "-c",
                           "import onnxruntime"], capture_output=True, text=True, timeout=120,
                          env=qemu.guest_env(env))
    assert bare.returncode != 0
    r = qemu.run_python(env, pi4, ["-c", "import onnxruntime; print(onnxruntime.__version__)"], timeout=120)
    assert r.stdout.strip() == "1.31.1"
    assert "GenuineIntel" in Path("/proc/cpuinfo").read_text() or "AMD" in Path("/proc/cpuinfo").read_text()


def test_qemu_crash_reports_signal_and_stderr(env) -> None:  # type: ignore[no-untyped-def]
    from edgeq.emulator import qemu

    with pytest.raises(EmulatorError, match="crashed \\(SIGSEGV\\)") as e:
        qemu.run_python(env, load_target("raspberry-pi-4"),
                        ["-c", "import sys, ctypes; print('about to crash', file=sys.stderr); ctypes.string_at(0)"],
                        timeout=120)
    assert "about to crash" in str(e.value) and e.value.exit_code == 3


def test_qemu_timeout_kills_the_run(env, pi4_auto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgeq.validate.runners.emulator import EmulatorRunner

    runner = EmulatorRunner(load_target("raspberry-pi-4"), timeout=1.0)
    with pytest.raises(EmulatorError, match="timed out after 1 s"):  # the deadline, not a wall-clock assertion
        runner.run(pi4_auto.output / "model.int8.onnx", "onnx", pi4_auto.output / "validation" / "inputs.npz",
                   tmp_path)
    assert listing(tmp_path) == []
