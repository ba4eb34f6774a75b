"""Byte-flip corpora for .onnx and .pte (seeded): each corrupted file goes through what `check` does with an
artifact — sniff its format, then run it on the host runner in an isolated child. Every case must end in a result
or a typed EdgeqError; a native crash (SIGSEGV/SIGABRT in a runtime) must surface as ArtifactError, never kill us."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgeq.errors import EdgeqError
from edgeq.integrity import sniff_format
from edgeq.validate.runners.host import HostRunner

SEED = 20261129
CASES = 24


def flipped(blob: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(blob)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


CASE_TIMEOUT_S = 120.0


def run_corpus(original: Path, fmt: str, inputs: Path, workdir: Path) -> Counter[str]:
    rng = np.random.default_rng(SEED)
    counts: Counter[str] = Counter()
    blob = original.read_bytes()
    for i in range(CASES):
        case = workdir / f"case{i}{original.suffix}"
        case.write_bytes(flipped(blob, rng))
        sniffed = sniff_format(case)
        try:
            # a forked child with a deadline: a crash or a hang on a mangled file is a typed error too
            HostRunner(timeout=CASE_TIMEOUT_S).run(case, sniffed if sniffed in ("onnx", "pte") else fmt, inputs,
                                                   workdir)
            counts["ran"] += 1
        except EdgeqError as e:
            counts["crash->typed" if "crashed (" in e.cause else "typed error"] += 1
        counts["cases"] += 1
    leftovers = [p.name for p in workdir.iterdir() if p.name.endswith((".isolated.npz", ".isolated.json"))]
    for p in leftovers:
        (workdir / p).unlink()
    return counts


def test_byte_flipped_onnx(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((16, 4), dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"]),
                           helper.make_node("Relu", ["y"], ["output"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(1).random((4, 1, 4, 4), dtype=np.float32))
    counts = run_corpus(tmp_path / "m.onnx", "onnx", tmp_path / "in.npz", tmp_path)
    print("\nonnx byte-flip outcomes:", dict(counts))
    assert counts["cases"] == CASES and counts["ran"] + counts["typed error"] + counts["crash->typed"] == CASES


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("executorch")
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    ep = torch.export.export(m, (torch.randn(1, 1, 4, 4),))
    d = tmp_path_factory.mktemp("pte")
    (d / "m.pte").write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    np.savez(d / "in.npz", x=np.random.default_rng(1).random((4, 1, 4, 4), dtype=np.float32))
    return d / "m.pte"


def test_byte_flipped_pte(tiny_pte: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_pte.parent / "in.npz", tmp_path / "in.npz")
    counts = run_corpus(tiny_pte, "pte", tmp_path / "in.npz", tmp_path)
    print("\npte byte-flip outcomes:", dict(counts))
    assert counts["cases"] == CASES and counts["ran"] + counts["typed error"] + counts["crash->typed"] == CASES
