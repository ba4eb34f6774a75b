"""Linears a ``.pte`` keeps float store float16 weights and run as XNNPACK float16 GEMMs
(``QuantOptions.fp16_float_linears``): fewer bytes, float-level outputs, on the host and on emulated ARM cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.config import QuantOptions
from edgeq.data import Dataset
from edgeq.executorch.lower import lower_to_executorch
from edgeq.executorch.quantize import quantize_pt2e
from edgeq.executorch.runtime import run_pte
from edgeq.signature import TensorSpec
from edgeq.targets import load_target

SHAPE = (1, 16, 64)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(64, 256), nn.Linear(256, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(x)))
        return out


def _inputs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(8, *SHAPE[1:])).astype(np.float32)


def _build(tmp: Path, fp16: bool) -> tuple[Path, dict[str, object], dict[str, object]]:
    """Dynamic INT8 with ``fc2`` kept float, lowered; returns (program, quantization info, delegation report)."""
    x = _inputs()
    ep = torch.export.export(Mlp().eval(), (torch.from_numpy(x[:1]).clone(),))
    opts = QuantOptions(mode="dynamic", per_channel=True, nodes_to_exclude=("fc2",), fp16_float_linears=fp16)
    qep, info = quantize_pt2e(ep, Dataset({"x": x}), [TensorSpec("x", "float32", SHAPE)], opts,
                              load_target("x86-64"))
    program, delegation = lower_to_executorch(qep)
    path = tmp / f"fp16_{fp16}.pte"
    path.write_bytes(program.buffer)
    return path, dict(info), dict(delegation)


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, dict[str, object], dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("fp16")
    return {fp16: _build(tmp, fp16) for fp16 in (False, True)}


def _reference() -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = Mlp().eval()(torch.from_numpy(_inputs())).numpy()
    return out


def test_kept_linear_is_float16_and_delegated(programs: dict[bool, tuple[Path, dict[str, object], dict[str, object]]]) -> None:
    (fp32_path, fp32_info, _), (fp16_path, fp16_info, delegation) = programs[False], programs[True]
    assert fp32_info["fp16_linears"] == [] and fp16_info["fp16_linears"] == ["linear_1"]  # fc2 only, not fc1
    # fc2's 256x64 float32 weight (65,536 bytes) becomes 32,768 bytes of float16
    saved = fp32_path.stat().st_size - fp16_path.stat().st_size
    assert 30_000 < saved < 34_000, saved
    left, inside = delegation["non_delegated"], delegation["delegated_counts"]
    assert isinstance(left, list) and isinstance(inside, dict)
    assert not any("linear" in op or "mm" in op for op in left), left  # both GEMMs run on XNNPACK
    assert any("linear" in op or "mm" in op for op in inside), inside
    assert any("to_dim_order_copy" in op or "_to_copy" in op for op in left), left  # the casts: portable kernels


def test_float16_program_is_as_close_to_float_as_the_float32_one(
        programs: dict[bool, tuple[Path, dict[str, object], dict[str, object]]]) -> None:
    ref = _reference()
    errors = {}
    for fp16, (path, _, _) in programs.items():
        outs, _ = run_pte(path, [_inputs()], warmup=0, repeats=0)
        (out,) = outs.values()
        errors[fp16] = float(np.abs(out - ref).max())
    # the INT8 first layer dominates; float16 in the second adds at most a tenth of it
    assert errors[True] <= errors[False] * 1.1 + 1e-3, errors


@pytest.mark.emulator
@pytest.mark.parametrize("target", ["raspberry-pi-4", "raspberry-pi-5"])
def test_float16_program_runs_on_emulated_arm_cores(
        target: str, programs: dict[bool, tuple[Path, dict[str, object], dict[str, object]]], emulator_env: object,
        tmp_path: Path) -> None:
    """Cortex-A72 (no FP16 arithmetic) and Cortex-A76 (FP16 arithmetic, float16 accumulation) both run it."""
    from edgeq.validate.runners.emulator import EmulatorRunner

    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=_inputs()[:2])
    ref = _reference()[:2]
    runner = EmulatorRunner(load_target(target), 600)
    result = runner.run(programs[True][0], "pte", inputs, tmp_path)
    (out,) = result.outputs.values()
    assert out.shape == ref.shape
    assert float(np.abs(out - ref).max()) < 0.05 * float(np.abs(ref).max())
