"""DATA loading: layouts, pickle refusal, and each malformed-data error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.data import Dataset, check_against_signature, load_dataset
from edgeq.errors import DataError, SignatureMismatchError
from edgeq.signature import TensorSpec


def test_npz_with_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "d.npz", image=x, labels=np.arange(10))
    d = load_dataset(tmp_path / "d.npz")
    assert len(d) == 10 and d.names == ["image"]
    np.testing.assert_array_equal(d.labels, np.arange(10))
    np.testing.assert_array_equal(d.inputs["image"], x)


def test_folder_of_npy_and_npz_shards(tmp_path: Path) -> None:
    a = tmp_path / "npy"
    a.mkdir()
    np.save(a / "input_ids.npy", np.ones((4, 16), np.int64))
    np.save(a / "attention_mask.npy", np.ones((4, 16), np.int64))
    d = load_dataset(a)
    assert sorted(d.names) == ["attention_mask", "input_ids"] and len(d) == 4
    b = tmp_path / "shards"
    b.mkdir()
    for i in range(3):
        np.savez(b / f"part{i}.npz", x=np.full((2, 3), i, np.float32))
    d = load_dataset(b)
    assert len(d) == 6 and d.inputs["x"][-1, 0] == 2


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    d = Dataset({"x": np.arange(100, dtype=np.float32)[:, None]}, np.arange(100))
    c1, e1 = d.split(0.2, seed=3)
    c2, e2 = d.split(0.2, seed=3)
    assert len(e1) == 20 and len(c1) == 80
    np.testing.assert_array_equal(e1.inputs["x"], e2.inputs["x"])
    assert not set(c1.labels.tolist()) & set(e1.labels.tolist())


def test_sample_is_contiguous_copy_without_zero_strides() -> None:
    base = np.random.default_rng(0).random((5, 8), dtype=np.float32)
    view = base[:, None, :]  # a broadcast-style view
    d = Dataset({"x": np.broadcast_to(view, (5, 3, 8))})
    s = d.sample(2)["x"]
    assert s.flags["C_CONTIGUOUS"] and 0 not in s.strides and s.shape == (1, 3, 8)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.savez(p, x=np.zeros((0, 3), np.float32)), "empty"),
        (lambda p: np.savez(p, x=np.array([[1.0, np.nan]], np.float32)), "NaN/Inf"),
        (lambda p: np.savez(p, x=np.array([[1.0, np.inf]], np.float32)), "NaN/Inf"),
        (lambda p: np.savez(p, x=np.zeros((3, 2), np.float32), y=np.zeros((4, 2), np.float32)), "sample counts"),
        (lambda p: np.savez(p, x=np.zeros((3, 2), np.float32), labels=np.zeros(2, np.int64)), "2 labels for 3 samples"),
        (lambda p: np.savez(p, x=np.array([["a"], ["b"]])), "unsupported dtype"),
        (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), "pickle"),
        (lambda p: Path(p).write_bytes(b"PK\x03\x04 truncated"), "not a readable .npz"),
    ],
)
def test_bad_data_is_a_typed_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(DataError) as e:
        load_dataset(p)
    assert message in str(e.value)


def test_missing_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data not found"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported data file type"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npy or .npz"):
        load_dataset(tmp_path / "empty")


def test_signature_checks_names_shapes_dtypes() -> None:
    sig = [TensorSpec("image", "float32", ("batch", 1, 8, 8))]
    ok = Dataset({"image": np.zeros((2, 1, 8, 8), np.float64)})
    assert check_against_signature(ok, sig).inputs["image"].dtype == np.float32  # lossless-enough widening
    with pytest.raises(SignatureMismatchError, match=r"do not match the model's \['image'\]"):
        check_against_signature(Dataset({"img": np.zeros((2, 1, 8, 8), np.float32)}), sig)
    with pytest.raises(SignatureMismatchError, match=r"per-sample shape \(1, 7, 8\)"):
        check_against_signature(Dataset({"image": np.zeros((2, 1, 7, 8), np.float32)}), sig)
    with pytest.raises(SignatureMismatchError, match="dtype int64, the model expects float32"):
        check_against_signature(Dataset({"image": np.zeros((2, 1, 8, 8), np.int64)}), sig)
