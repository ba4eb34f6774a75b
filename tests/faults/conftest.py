"""Shared pieces of the fault-injection tests: one small ONNX export of the tiny fixture CNN, a model that hangs
onnxruntime for real, and a helper that re-seals an edited folder (as an attacker or a broken disk would leave it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeq.hashing import sha256_file
from tests.test_cli import FIX

TINY = f"{FIX}:tiny_cnn"


@pytest.fixture(scope="session")
def tiny_calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("fault-data") / "calib.npz"
    np.savez(p, image=rng.random((40, 1, 8, 8), dtype=np.float32))
    return p


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_calib: Path) -> Path:
    """The tiny CNN exported to ONNX for x86-64 (no search): read-only, copy it before editing."""
    import edgeq

    out = tmp_path_factory.mktemp("fault-exports") / "tiny"
    edgeq.export(TINY, calib=str(tiny_calib), output=out, search=edgeq.SearchOptions(mode="off"))
    return out


@pytest.fixture
def tiny_folder(tmp_path: Path, tiny_export: Path) -> Path:
    out = tmp_path / "tiny"
    shutil.copytree(tiny_export, out)
    return out


def hanging_onnx(path: Path, in_name: str = "image", out_name: str = "logits", classes: int = 10) -> Path:
    """image (N,1,8,8) -> logits (N,classes) through a ``Loop`` with a 2**62 trip count: onnxruntime really runs it
    (it never returns), which is what a hung runtime looks like from outside."""
    import onnx
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "zero"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    graph = helper.make_graph(
        [helper.make_node("Flatten", [in_name], ["flat"]),
         helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["init"]),
         helper.make_node("Loop", ["trips", "cond", "init"], [out_name], body=body)],
        "hang",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", classes])],
        [helper.make_tensor("trips", TensorProto.INT64, [], [2 ** 62]),
         helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
         helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
         helper.make_tensor("ends", TensorProto.INT64, [1], [classes]),
         helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reseal(out: Path, rel: str) -> None:
    """Record the new bytes of ``out/rel`` in edgeq.json (size and sha256), so only check's own runs can object."""
    m = json.loads((out / "edgeq.json").read_text())
    p = out / rel
    for a in m["artifacts"]:
        if a["path"] == rel:
            a["sha256"], a["bytes"] = sha256_file(p), p.stat().st_size
    for f in m.get("files", []):
        if f["path"] == rel:
            f["sha256"] = sha256_file(p)
            if "bytes" in f:
                f["bytes"] = p.stat().st_size
    (out / "edgeq.json").write_text(json.dumps(m))


@pytest.fixture(scope="session")
def tiny_pte_export(tmp_path_factory: pytest.TempPathFactory, tiny_calib: Path) -> Path:
    """The tiny CNN as .pte + .bpte (ExecuTorch, no search): read-only, copy it before editing."""
    import edgeq

    pytest.importorskip("executorch")
    out = tmp_path_factory.mktemp("fault-exports") / "tiny-pte"
    edgeq.export(TINY, calib=str(tiny_calib), output=out, formats=("pte",), search=edgeq.SearchOptions(mode="off"))
    return out
