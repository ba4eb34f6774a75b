"""Small digits data for the compression tests: 256 training images (with labels), shared per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.data import Dataset


@pytest.fixture(scope="session")
def digits_train() -> Dataset:
    from edgeq.zoo.digits import digits_arrays

    xtr, ytr, _, _ = digits_arrays()
    return Dataset({"image": np.ascontiguousarray(xtr[:256])}, ytr[:256], "digits[:256]")


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory, digits_train: Dataset) -> Path:
    p = tmp_path_factory.mktemp("cdata") / "train.npz"
    np.savez(p, image=digits_train.inputs["image"], labels=digits_train.labels)
    return p
