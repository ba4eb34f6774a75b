"""The one place runners turn validation data into device files and device files back into named outputs.

Every runner (host, host-cpp, emulator, ssh) and every device-side program (ORT-Python, the ExecuTorch C++ runner)
speaks these two formats: ``inputs.npz`` -> a tensor file (``device/tensor_io.py``, read by the C++ runner) and
the program's outputs (``.npz`` from ORT-Python, a tensor file from the C++ runner) -> ``{canonical name: array}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.validate.device.tensor_io import TensorFileError, read_tensors, write_tensors

LABELS_KEY = "labels"  # stored with the validation inputs; never a model input


def canonical_output_names(n: int) -> list[str]:
    """edgeq's output names for torch sources (ONNX sources keep their graph's names): ``output`` / ``output_i``."""
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def write_input_tensors(inputs_npz: Path, dest: Path) -> int:
    """Convert a validation ``inputs.npz`` (signature order, labels dropped) to a tensor file; returns the rows."""
    with np.load(inputs_npz, allow_pickle=False) as z:
        arrays = {k: np.ascontiguousarray(z[k]) for k in z.files if k != LABELS_KEY}
    write_tensors(dest, arrays)
    return int(next(iter(arrays.values())).shape[0])


def read_output_tensors(path: Path, err: type[Exception], where: str) -> dict[str, np.ndarray]:
    """A C++ runner's output tensor file, under the canonical output names."""
    if not path.is_file():
        raise err(f"{where} wrote no outputs ({path.name})")
    try:
        arrays = list(read_tensors(path).values())
    except TensorFileError as e:
        raise err(f"{where}: the outputs are unreadable: {e}") from e
    return dict(zip(canonical_output_names(len(arrays)), arrays, strict=True))


def read_output_npz(path: Path, err: type[Exception], where: str) -> dict[str, np.ndarray]:
    """An ORT-Python program's ``outputs.npz`` (already under the model's output names)."""
    if not path.is_file():
        raise err(f"{where} wrote no outputs ({path.name})")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001  a truncated or foreign file: a typed error, not a traceback
        raise err(f"{where}: outputs {path.name} are unreadable: {type(e).__name__}: {e}") from e
