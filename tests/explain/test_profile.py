"""Where the time goes: real per-operator profiles of a real ``.pte`` (ExecuTorch ETDump) and ``.onnx``
(onnxruntime profiler), and the warnings that name the operators outside the XNNPACK delegate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeq.executorch.lower import lower_to_executorch
from edgeq.explain.latency import profile_artifacts
from edgeq.explain.section import op_profile_section, top_rows
from edgeq.manifest import Artifact


class CumsumNet(torch.nn.Module):
    """Two convolutions XNNPACK takes, and a cumulative sum it has no kernel for (a portable-kernel fallback)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.c2 = torch.nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        return torch.cumsum(y, dim=1).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Artifact]]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("prof")
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    np.savez(out / "inputs.npz", x=x.numpy())
    model = CumsumNet().eval()
    prog, deleg = lower_to_executorch(torch.export.export(model, (x[:1],)))
    (out / "model.pte").write_bytes(prog.buffer)
    torch.onnx.export(model, (x[:1],), str(out / "model.onnx"), input_names=["x"], dynamo=True)
    arts = [Artifact("pte-fp32", "model.pte", "pte", "fp32", "candidate", details={"delegation": deleg}),
            Artifact("onnx-fp32", "model.onnx", "onnx", "fp32", "candidate")]
    return out, arts


def test_pte_operator_outside_delegate_is_named(folder: tuple[Path, list[Artifact]]) -> None:
    out, arts = folder
    ex = profile_artifacts(out, arts, "inputs.npz")
    assert ex["notes"] == []
    warns = [w for w in ex["warnings"] if w["kind"] == "not_delegated"]
    assert len(warns) == 1 and warns[0]["artifact"] == "pte-fp32"
    assert "aten.cumsum" in warns[0]["operators"] and "aten.cumsum" in warns[0]["message"]
    pte = next(p for p in ex["profiles"] if p["artifact"] == "pte-fp32")
    portable = [o for o in pte["ops"] if o["where"] == "portable"]
    assert "cumsum.out" in [o["op"] for o in portable]  # the ETDump sees the fallback kernel run
    assert any(o["where"] == "XNNPACK" and "Convolution" in o["op"] for o in pte["ops"])
    page = op_profile_section({"explain": ex, "artifacts": [a.to_dict() for a in arts]}) or ""
    assert "aten.cumsum" in page and "op-warning" in page


@pytest.mark.parametrize("name", ["pte-fp32", "onnx-fp32"])
def test_operator_table_sums_to_the_measured_latency(folder: tuple[Path, list[Artifact]], name: str) -> None:
    """The rows (operators + the runtime's time between them) against the wall time of the same profiled runs,
    paired run by run (median), so a run preempted in the Python call on a busy host does not decide."""
    out, arts = folder
    prof = next(p for p in profile_artifacts(out, arts, "inputs.npz")["profiles"] if p["artifact"] == name)
    assert prof["runs"] == 10
    rows = top_rows(prof)
    assert sum(r["ms"] for r in rows) == pytest.approx(prof["total_ms"], rel=1e-9)  # "other" row keeps the sum
    assert prof["total_ms"] == pytest.approx(prof["runtime_ms"], rel=1e-6)  # rows sum to the runtime's run event
    assert abs(prof["coverage"] - 1) <= 0.15, prof  # ... which is the wall time of the same runs, run by run


def test_float_nodes_between_unfused_qdq_are_named(folder: tuple[Path, list[Artifact]]) -> None:
    """onnxruntime's QDQ quantizer has no integer CumSum: the quantized model dequantizes, sums in float, and
    the runtime executes that CumSum in float with the dequantize in front of it."""
    from edgeq.config import QuantOptions
    from edgeq.data import Dataset
    from edgeq.onnx.quantize import quantize_onnx_static

    out, _ = folder
    with np.load(out / "inputs.npz") as z:
        calib = Dataset({"x": z["x"]})
    opts = QuantOptions(calibration="minmax", per_channel=True, activation_type="uint8", weight_type="int8",
                        reduce_range=False, max_calibration_samples=4)
    quantize_onnx_static(out / "model.onnx", out / "model.int8.onnx", calib, opts)
    art = Artifact("onnx-int8-static", "model.int8.onnx", "onnx", "int8-static", "candidate")
    ex = profile_artifacts(out, [art], "inputs.npz")
    [w] = [w for w in ex["warnings"] if w["kind"] == "unfused_qdq"]
    assert "CumSum" in w["operators"] and "CumSum" in w["message"]
    assert not any(op.startswith("QLinear") for op in w["operators"])  # the fused convolutions are not flagged


def test_slower_than_float_names_where_the_time_goes(folder: tuple[Path, list[Artifact]]) -> None:
    """When the export's paired latency measurement found INT8 slower, the warning names its slowest operators."""
    from edgeq.manifest import Validation

    out, arts = folder
    base = Artifact("onnx-fp32", "model.onnx", "onnx", "fp32", "baseline")
    slow = Artifact("onnx-int8-static", "model.onnx", "onnx", "int8-static", "candidate", validations=(
        Validation("host", "x86_64", "host", [], False, {}, {"passed": True, "failures": []}, 1.0, "host", "ort",
                   latency_detail={"ratio_to_float": 1.6}),))
    ex = profile_artifacts(out, [base, slow], "inputs.npz")
    [w] = [w for w in ex["warnings"] if w["kind"] == "slower_than_float"]
    slowest = next(p for p in ex["profiles"] if p["artifact"] == "onnx-int8-static")["ops"][0]["name"]
    assert w["artifact"] == "onnx-int8-static" and "1.60×" in w["message"] and slowest in w["message"]
    slow = dataclasses.replace(slow, validations=(dataclasses.replace(slow.validations[0],
                                                                      latency_detail={"ratio_to_float": 1.02}),))
    assert not [w for w in profile_artifacts(out, [base, slow], "inputs.npz")["warnings"]
                if w["kind"] == "slower_than_float"]
