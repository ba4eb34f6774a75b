"""Fixtures for the pass tests: small real graphs (digits CNN, a tiny transformer) and one Android export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

DIGITS_MODEL = "edgeq.zoo.digits:digits_cnn"
# Measured on the digits CNN (android-arm64, host ORT, 150 eval samples): INT8 cosine 0.9999, drop 0.67 pt.
PINNED_DROP_PTS = 4.0
PINNED_MIN_COSINE = 0.97


@pytest.fixture(scope="session")
def digits_fp32(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """(model.fp32.onnx with a dynamic batch, calibration Dataset) for the digits CNN."""
    from edgeq.capture import capture
    from edgeq.data import load_dataset
    from edgeq.onnx.export import export_float_onnx
    from edgeq.source import load_source

    calib = load_dataset(str(digits_small[0]))
    captured, calib = capture(load_source(DIGITS_MODEL), calib)
    out = tmp_path_factory.mktemp("digits_fp32") / "model.fp32.onnx"
    export_float_onnx(captured, out)
    return out, calib


def _tiny_encoder():  # type: ignore[no-untyped-def]
    """A 2-block BERT-style encoder over token ids with hand-written attention (untrained; seeded)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int = 32, h: int = 2) -> None:
            super().__init__()
            self.h = h
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.f1, self.f2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):  # type: ignore[no-untyped-def]
            b, t, d = x.shape
            hd = d // self.h

            def heads(y):  # type: ignore[no-untyped-def]
                return y.view(b, t, self.h, hd).transpose(1, 2)

            att = torch.softmax(heads(self.q(x)) @ heads(self.k(x)).transpose(-1, -2) / math.sqrt(hd), -1)
            x = self.ln1(x + self.o((att @ heads(self.v(x))).transpose(1, 2).reshape(b, t, d)))
            return self.ln2(x + self.f2(nn.functional.gelu(self.f1(x))))

    class Encoder(nn.Module):
        def __init__(self, vocab: int = 50, t: int = 16, d: int = 32) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.randn(t, d) * 0.02)
            self.blocks = nn.ModuleList([Block(d), Block(d)])
            self.head = nn.Linear(d, 4)

        def forward(self, input_ids):  # type: ignore[no-untyped-def]
            x = self.emb(input_ids) + self.pos[: input_ids.shape[1]]
            for blk in self.blocks:
                x = blk(x)
            return self.head(x.mean(1))

    torch.manual_seed(0)
    return Encoder().eval()


@pytest.fixture(scope="session")
def encoder_fp32(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(float ONNX of a tiny token-id transformer with a dynamic batch, calibration Dataset of token ids)."""
    import torch

    from edgeq.data import Dataset

    model = _tiny_encoder()
    ids = np.random.default_rng(0).integers(0, 50, size=(8, 16), dtype=np.int64)
    ep = torch.export.export(model, (torch.from_numpy(ids[:2].copy()),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    out = tmp_path_factory.mktemp("encoder") / "encoder.fp32.onnx"
    torch.onnx.export(ep, dynamo=True, opset_version=18, optimize=True, verbose=False).save(str(out))
    return out, Dataset({"input_ids": ids})


@pytest.fixture(scope="session")
def android_export(tmp_path_factory: pytest.TempPathFactory, digits_small: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """One ONNX export of the digits CNN for android-arm64 (fixed shapes, fp16, .ort, usability, budget).

    Search off and an explicit budget: the tests read the user's quantization options in the shipped files, so a
    digits model that trains slightly differently must not make the search replace them. The budget is the
    measured float/INT8 gap of this CNN (cosine 0.9999, drop 0.67 pt on 150 samples) with a wide margin."""
    import edgeq

    calib, ev = digits_small
    out = tmp_path_factory.mktemp("android") / "digits"
    return edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), output=out, target="android-arm64",
                        validate_on=("host",), search=edgeq.SearchOptions(mode="off"),
                        budget=edgeq.Budget(max_accuracy_drop=PINNED_DROP_PTS, min_cosine=PINNED_MIN_COSINE))


@pytest.fixture
def make_ctx():  # type: ignore[no-untyped-def]
    """Factory: a PassContext for one bundled target, as the ONNX backend builds it."""
    from edgeq.config import QuantOptions
    from edgeq.pipeline.state import BuildState
    from edgeq.targets import load_target

    def make(target: str, model_path: Path | None, calib, workdir: Path, fmt: str = "onnx"):  # type: ignore[no-untyped-def]
        return BuildState(target=load_target(target), fmt=fmt, workdir=workdir, quant=QuantOptions(),
                           model_path=model_path, calib=calib)

    return make


@pytest.fixture(scope="session")
def pte_pair(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An XNNPACK-lowered MLP serialized twice: ExecuTorch defaults, and with the executorch-layout pass's config.

    Returns (folder, default.pte, layout.pte, example input, torch output, layout kwargs).
    """
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    from edgeq.config import QuantOptions
    from edgeq.pipeline.pipeline import Pipeline
    from edgeq.pipeline.state import BuildState
    from edgeq.targets import load_target

    folder = tmp_path_factory.mktemp("pte")
    target = load_target("android-arm64")
    state = BuildState(target=target, fmt="pte", workdir=folder, quant=QuantOptions())
    log: list = []
    state = Pipeline.for_target(target).run_phase("configure", state, log)  # what build_format does before capture
    kwargs = state.executorch_backend_config.kwargs()

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    x = torch.randn(1, 64)
    ep = torch.export.export(model, (x,))
    paths = []
    for name, cfg in (("default.pte", {}), ("layout.pte", kwargs)):
        prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch(
            ExecutorchBackendConfig(**cfg))
        (folder / name).write_bytes(prog.buffer)
        paths.append(folder / name)
    with torch.no_grad():
        ref = model(x).numpy()
    return folder, paths[0], paths[1], x, ref, kwargs, log
