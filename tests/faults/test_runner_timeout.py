"""A runtime that hangs or crashes, for real: a ``Loop`` with a 2**62 trip count, a child that segfaults, a child
killed from outside. Each ends as a typed error naming the artifact, never as a hung edgeq."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import edgeq
from edgeq.errors import ArtifactError, RunnerError, TargetError
from edgeq.targets import load_target, parse_target, targets_dir, with_runner_timeout
from edgeq.validate.isolated import run_forked
from edgeq.validate.runners.host import HostRunner
from tests.faults.conftest import hanging_onnx, reseal
from tests.test_cli import edgeq as edgeq_cli


def _inputs(tmp_path: Path) -> Path:
    p = tmp_path / "inputs.npz"
    np.savez(p, image=np.zeros((2, 1, 8, 8), np.float32))
    return p


def test_a_hung_onnxruntime_is_killed_at_the_deadline(tmp_path: Path) -> None:
    model = hanging_onnx(tmp_path / "hang.onnx")
    runner = HostRunner(timeout=2.0)
    with pytest.raises(RunnerError, match=r"hang\.onnx: the onnx runtime did not finish within 2 s; killed") as e:
        runner.run(model, "onnx", _inputs(tmp_path), tmp_path)
    assert e.value.exit_code == 3 and "--runner-timeout" in e.value.hint


def test_a_segfault_in_the_child_is_an_artifact_error(tmp_path: Path) -> None:
    def crash() -> None:
        ctypes.string_at(0)  # a real SIGSEGV: reads address 0

    with pytest.raises(ArtifactError, match=r"m\.pte: the pte runtime crashed \(SIGSEGV\)"):
        run_forked("m.pte", "pte", crash, tmp_path / "err.json", timeout=60)


def test_a_child_killed_from_outside_is_a_runner_error(tmp_path: Path) -> None:
    def killed() -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does

    with pytest.raises(RunnerError, match=r"m\.onnx: the onnx runtime was killed by SIGKILL") as e:
        run_forked("m.onnx", "onnx", killed, tmp_path / "err.json", timeout=60)
    assert e.value.exit_code == 3


def test_the_deadline_comes_from_the_profile_and_the_flag_overrides_it() -> None:
    t = load_target("raspberry-pi-4")
    assert t.runner_timeout_s == 600.0
    assert with_runner_timeout(t, 7).runner_timeout_s == 7.0 and with_runner_timeout(t, None) is t
    with pytest.raises(TargetError, match="runner_timeout_s must be a number of seconds"):
        with_runner_timeout(t, -1)
    text = (targets_dir() / "raspberry-pi-4.toml").read_text()
    bad = text.replace("runner_timeout_s = 600", 'runner_timeout_s = "soon"')
    with pytest.raises(TargetError, match=r"\[validation\]: runner_timeout_s"):
        parse_target(bad, "pi.toml")


def test_check_of_a_folder_whose_model_hangs_exits_3_naming_it(tiny_folder: Path) -> None:
    hanging_onnx(tiny_folder / "model.int8.onnx", "image", _output_name(tiny_folder))
    reseal(tiny_folder, "model.int8.onnx")
    r = edgeq_cli("check", str(tiny_folder), "--runner-timeout", "3")
    assert r.returncode == 3, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert "model.int8.onnx: the onnx runtime did not finish within 3 s; killed" in r.stderr
    with pytest.raises(RunnerError, match="model.int8.onnx"):
        edgeq.check(tiny_folder, runner_timeout=3)


def _output_name(folder: Path) -> str:
    import onnx

    return str(onnx.load(str(folder / "model.fp32.onnx")).graph.output[0].name)


@pytest.mark.emulator
def test_the_emulator_runner_kills_a_hung_runtime(tmp_path: Path, emulator_env) -> None:  # type: ignore[no-untyped-def]
    from edgeq.errors import EmulatorError
    from edgeq.validate.runners import get_runner

    runner = get_runner("emulator", with_runner_timeout(load_target("raspberry-pi-4"), 20))
    with pytest.raises(EmulatorError, match="timed out after 20 s"):
        runner.run(hanging_onnx(tmp_path / "hang.onnx"), "onnx", _inputs(tmp_path), tmp_path)


@pytest.mark.parametrize("command", ["export", "validate", "check"])
def test_every_command_that_runs_artifacts_takes_runner_timeout(command: str) -> None:
    r = edgeq_cli(command, "--help")
    assert r.returncode == 0 and "--runner-timeout" in r.stdout and "runner_timeout_s" in r.stdout
