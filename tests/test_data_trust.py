"""Hostile or sloppy data is refused up front with an error that names the field; nothing is allocated or written."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeq.data import check_labels, load_dataset
from edgeq.errors import DataError, SignatureMismatchError
from tests.test_cli import FIX


def bomb_npy(shape: tuple[int, ...]) -> bytes:
    """A valid .npy header that claims a huge array, followed by a few bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 16


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([0.0, 1.0, 2.5]), "must be integers"),
    (np.array([0.0, np.nan, 1.0]), "must be integers"),
    (np.array([0, -1, 2]), "negative class id"),
    (np.array([[0, 1], [1, 0], [0, 0]]), "one class id per sample"),
])
def test_bad_labels_are_refused_by_name(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4), np.float32), labels=labels)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(tmp_path / "d.npz")
    assert "labels" in e.value.cause


def test_labels_beyond_the_models_classes_are_refused() -> None:
    with pytest.raises(DataError, match="class id 10 but the model has 10 output classes"):
        check_labels(np.array([0, 3, 10]), "eval.npz", n_classes=10)
    assert check_labels(np.array([[1], [2]], dtype=np.int32), "e", 3).tolist() == [1, 2]


@pytest.mark.slow  # an end-to-end export or search: out of the inner loop (make test-fast)
def test_out_of_range_labels_fail_the_export_with_exit_2_and_no_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", input=rng.random((20, 1, 8, 8), dtype=np.float32),
             labels=np.full(20, 11, dtype=np.int64))  # slow_mlp has 10 outputs
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "export", f"{FIX}:slow_mlp", "--calib", "c.npz", "-o",
                        "out", "--no-search"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "class id 11 but the model has 10 output classes" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_npy_header_bomb_is_refused_before_allocation(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "x.npy").write_bytes(bomb_npy((1 << 40, 1 << 10)))
    with pytest.raises(DataError, match="header declares shape"):
        load_dataset(d)
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as z:
        z.writestr("x.npy", bomb_npy((1 << 40,)))
    with pytest.raises(DataError, match="header declares shape"):
        load_dataset(tmp_path / "b.npz")


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    d = tmp_path / "obj"
    d.mkdir()
    (tmp_path / "o.npy").rename(d / "x.npy")
    with pytest.raises(DataError, match="pickle"):
        load_dataset(d)


def test_shape_mismatch_is_named_as_such_not_blamed_on_torch_export(tmp_path: Path) -> None:
    import edgeq

    np.savez(tmp_path / "c.npz", input=np.zeros((8, 1, 9, 9), np.float32))  # slow_mlp wants 8x8
    with pytest.raises(SignatureMismatchError, match=r"cannot run on this data \(input: float32 per-sample shape "
                                                     r"\(1, 9, 9\)\)") as e:
        edgeq.export(f"{FIX}:slow_mlp", calib=str(tmp_path / "c.npz"), output=tmp_path / "o")
    assert "torch.export" not in e.value.cause and not (tmp_path / "o").exists()
