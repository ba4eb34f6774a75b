"""Run a ``.pte`` on the host through the ExecuTorch runtime (Python bindings) — the ``host`` runner's pte path.

A ``.pte`` exported by edgeq has a static batch of 1, so every sample runs on its own; the latency is the
median of single-sample runs after warm-up, like the ONNX path.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeq.errors import ArtifactError, RunnerError
from edgeq.validate.tensor_files import canonical_output_names

if TYPE_CHECKING:
    import torch
    from executorch.runtime import Method

WARMUP = 3
REPEATS = 20
_MAGIC_OFFSET, _MAGIC = 4, b"ET"  # flatbuffer file identifier "ET12" at byte 4 of every .pte


def executorch_version() -> str:
    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return "unknown"


def load_inputs(inputs: Path) -> list[np.ndarray]:
    """Model inputs from a validation ``inputs.npz`` in signature order (``labels`` is not an input)."""
    with np.load(inputs, allow_pickle=False) as z:
        return [np.ascontiguousarray(z[k]) for k in z.files if k != "labels"]


def check_pte_header(path: Path) -> None:
    try:
        head = path.read_bytes()[:8]
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read it ({e})") from e
    if len(head) < 8 or head[_MAGIC_OFFSET:_MAGIC_OFFSET + 2] != _MAGIC:
        raise ArtifactError(f"{path}: not an ExecuTorch program (no 'ET' flatbuffer identifier)",
                            "the file is corrupt or not a .pte; re-run edgeq export")


def load_method(path: Path) -> Method:
    """Load ``forward`` of a .pte; a corrupt or truncated file is an :class:`ArtifactError`."""
    check_pte_header(path)
    from executorch.runtime import Runtime, Verification  # optional: the [executorch] extra

    try:
        program = Runtime.get().load_program(path, verification=Verification.InternalConsistency)
        method = program.load_method("forward")
    except Exception as e:
        raise ArtifactError(f"{path}: the ExecuTorch runtime cannot load it ({type(e).__name__}: {str(e)[:200]})",
                            "the file is corrupt or truncated; re-run edgeq export") from e
    if method is None:
        raise ArtifactError(f"{path}: the program has no 'forward' method")
    return method


def run_pte(artifact: Path, inputs: list[np.ndarray], warmup: int = WARMUP,
            repeats: int = REPEATS) -> tuple[dict[str, np.ndarray], float | None]:
    """All samples one by one; returns (outputs keyed by canonical name, median single-sample latency in ms)."""
    import torch  # heavy: torch, imported only where a model is built or run

    method = load_method(artifact)
    n = inputs[0].shape[0]

    def sample(i: int) -> list[torch.Tensor]:
        # Fresh contiguous clones: numpy views can carry zero strides that ExecuTorch rejects.
        return [torch.from_numpy(np.ascontiguousarray(x[i:i + 1]).copy()).contiguous() for x in inputs]

    chunks: list[list[np.ndarray]] = []
    try:
        for i in range(n):
            outs = method.execute(sample(i))
            chunks.append([o.detach().numpy().copy() for o in outs])
        one = sample(0)
        for _ in range(warmup):
            method.execute(one)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            method.execute(one)
            times.append((time.perf_counter() - t0) * 1000.0)
    except Exception as e:
        raise RunnerError(f"the ExecuTorch runtime failed on {artifact.name}: {type(e).__name__}: {str(e)[:300]}",
                          "check that the evaluation data matches the model's input dtypes and shapes") from e
    names = canonical_output_names(len(chunks[0]))
    outputs = {name: np.concatenate([c[k] for c in chunks]) for k, name in enumerate(names)}
    return outputs, (float(np.median(times)) if times else None)
