"""Calibration / evaluation data: an ``.npz`` or a directory of ``.npy``/``.npz`` files, loaded without pickle.

Layout: one array per model input, keyed by the input's name, first axis = samples; an optional
``labels`` array (integer class ids, one per sample). A directory holds either one ``NAME.npy`` per input
(plus ``labels.npy``) or several ``.npz`` shards with the same keys, concatenated in file-name order.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
from numpy.lib import format as npformat

from edgeq.errors import DataError, SignatureMismatchError
from edgeq.imagefolder import Preprocess, is_image_folder, load_image_folder
from edgeq.npz import save_npz
from edgeq.signature import TensorSpec

if TYPE_CHECKING:
    from edgeq.imagefolder import Preprocess

LABELS_KEY = "labels"


@dataclass(frozen=True)
class Dataset:
    """Named input arrays with a shared first (sample) axis, and optional labels."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.inputs:
            raise DataError(f"{self.source}: no input arrays", "add one array per model input, keyed by input name")
        counts = {k: (v.shape[0] if v.ndim else 0) for k, v in self.inputs.items()}
        if len(set(counts.values())) != 1:
            raise DataError(f"{self.source}: inputs have different sample counts {counts}",
                            "the first axis of every array is the sample axis and must agree")
        n = next(iter(counts.values()))
        if n == 0:
            raise DataError(f"{self.source}: the data set is empty (0 samples)",
                            "give at least one sample; 100-500 representative samples calibrate well")
        if self.labels is not None and self.labels.shape[0] != n:
            raise DataError(f"{self.source}: {self.labels.shape[0]} labels for {n} samples")
        for name, arr in self.inputs.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise DataError(f"{self.source}: input {name!r} contains {bad} NaN/Inf value(s)",
                                "clean or drop those samples; NaN calibration ranges would poison every scale")
            if arr.dtype.kind not in "fiub":
                raise DataError(f"{self.source}: input {name!r} has unsupported dtype {arr.dtype}",
                                "use float32, float16, int64, int32 or bool arrays")

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.inputs)

    def take(self, index: np.ndarray | slice) -> Dataset:
        labels = None if self.labels is None else self.labels[index]
        return Dataset({k: np.ascontiguousarray(v[index]) for k, v in self.inputs.items()}, labels, self.source)

    def head(self, n: int) -> Dataset:
        return self if n >= len(self) else self.take(slice(0, n))

    def split(self, eval_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Deterministic shuffled split into (calibration, evaluation)."""
        n = len(self)
        if n < 2:
            raise DataError(f"{self.source}: {n} sample(s) cannot be split into calibration and evaluation",
                            "pass a separate --eval set or more samples")
        order = np.random.default_rng(seed).permutation(n)
        n_eval = min(n - 1, max(1, round(n * eval_fraction)))
        return self.take(np.sort(order[n_eval:])), self.take(np.sort(order[:n_eval]))

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """One sample with a batch axis of 1, as fresh contiguous arrays (no zero strides)."""
        return {k: np.ascontiguousarray(v[i : i + 1]).copy() for k, v in self.inputs.items()}

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            yield {k: np.ascontiguousarray(v[start : start + batch_size]) for k, v in self.inputs.items()}

    def to_npz(self, path: Path) -> None:
        arrays = dict(self.inputs)
        if self.labels is not None:
            arrays[LABELS_KEY] = self.labels
        save_npz(path, arrays)


def _check_npy_header(f: IO[bytes], available: int, where: str) -> None:
    """Parse a .npy header (numpy's own parser: literal_eval, no pickle) and refuse it before any allocation
    when it declares more bytes than the file holds (a header bomb) or an object dtype (pickle)."""
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, EOFError, OSError) as e:
        raise DataError(f"{where}: not a valid .npy array ({str(e)[:200]})", "re-create it with numpy.save") from e
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (pickle), which edgeq refuses to load",
                        "save plain numeric arrays")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = available - f.tell()
    if need > have:
        raise DataError(f"{where}: the header declares shape {tuple(shape)} {dtype} ({need} bytes) but only "
                        f"{have} bytes follow", "the file is truncated or crafted; re-create it with numpy.save")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    with zf.open(info) as member:
                        _check_npy_header(member, info.file_size, f"{path}[{info.filename}]")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: contains pickled objects, which edgeq refuses to load",
                            "save plain numeric arrays (np.savez with numeric dtypes)") from e
        raise DataError(f"{path}: not a readable .npz file ({e})") from e
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise DataError(f"{path}: not a readable .npz file ({str(e)[:200]})", "re-create it with numpy.savez") from e


def _read_npy(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as f:
            _check_npy_header(f, path.stat().st_size, str(path))
        return np.asarray(np.load(path, allow_pickle=False))
    except ValueError as e:
        raise DataError(f"{path}: not a plain numeric .npy ({e})") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable .npy ({e})") from e


def check_labels(labels: np.ndarray, source: str, n_classes: int | None = None) -> np.ndarray:
    """Labels are class ids: a 1-D integer array (an (N, 1) column is flattened), no negatives, and below the
    model's number of output classes when known. Returns them as int64."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise DataError(f"{source}: labels has shape {labels.shape}; expected one class id per sample",
                        "store labels as a 1-D integer array (not one-hot)")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels has dtype {labels.dtype}; class ids must be integers",
                        "save labels as int64 class ids (e.g. y.astype(np.int64)); NaN or fractional labels "
                        "would make the accuracy meaningless")
    if labels.size and int(labels.min()) < 0:
        raise DataError(f"{source}: labels holds {int((labels < 0).sum())} negative class id(s) "
                        f"(min {int(labels.min())})", "class ids start at 0")
    if n_classes is not None and labels.size and int(labels.max()) >= n_classes:
        raise DataError(f"{source}: labels holds class id {int(labels.max())} but the model has {n_classes} "
                        f"output classes (ids 0..{n_classes - 1})", "check that the labels belong to this model")
    return labels.astype(np.int64)


def load_dataset(path: str | Path, preprocess: Preprocess | None = None,
                 input_names: list[str] | None = None) -> Dataset:
    """Load an ``.npz`` file, a directory of ``.npy`` / ``.npz`` files, or a folder of images (see
    :mod:`edgeq.imagefolder`; ``preprocess`` is its :class:`~edgeq.imagefolder.Preprocess`)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data not found: {p}", "pass an .npz file or a directory of .npy/.npz files")

    if is_image_folder(p):
        if not input_names or len(input_names) != 1:
            raise DataError(f"{p}: a folder of images feeds a model with one input; this one takes {input_names}",
                            "write an .npz keyed by input name instead")
        inputs, labels, _classes = load_image_folder(p, preprocess or Preprocess(), input_names[0])
        return Dataset(inputs, None if labels is None else check_labels(labels, str(p)), str(p))
    if p.is_file():
        if p.suffix != ".npz":
            raise DataError(f"{p}: unsupported data file type {p.suffix!r}",
                            "use an .npz keyed by input name (np.savez(path, input=..., labels=...))")
        arrays = _read_npz(p)
    else:
        npys = sorted(p.glob("*.npy"))
        npzs = sorted(p.glob("*.npz"))
        if npys and npzs:
            raise DataError(f"{p}: mixes .npy and .npz files", "use one layout per directory")
        if npys:
            arrays = {f.stem: _read_npy(f) for f in npys}
        elif npzs:
            shards = [_read_npz(f) for f in npzs]
            keys = set(shards[0])
            for f, s in zip(npzs, shards, strict=True):
                if set(s) != keys:
                    raise DataError(f"{f}: keys {sorted(s)} differ from {npzs[0].name}'s {sorted(keys)}")
            arrays = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
        else:
            raise DataError(f"{p}: directory holds no .npy or .npz files")
    labels = arrays.pop(LABELS_KEY, None)
    if labels is not None:
        labels = check_labels(labels, str(p))
    return Dataset(arrays, labels, str(p))


def check_against_signature(data: Dataset, signature: list[TensorSpec]) -> Dataset:
    """Verify names, per-sample shapes and dtypes; cast only lossless float64->float32 style widenings."""
    expected = {s.name: s for s in signature}
    missing = [n for n in expected if n not in data.inputs]
    extra = [n for n in data.inputs if n not in expected]
    if missing or extra:
        raise SignatureMismatchError(
            f"{data.source}: input names {sorted(data.inputs)} do not match the model's {list(expected)}"
            + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""),
            "key each array by the model's input name; run `edgeq inspect MODEL` to see them",
        )
    fixed: dict[str, np.ndarray] = {}
    for name, spec in expected.items():
        arr = data.inputs[name]
        per_sample = tuple(arr.shape[1:])
        want = tuple(spec.shape[1:])
        if len(per_sample) != len(want) or any(
            isinstance(w, int) and w != g for w, g in zip(want, per_sample, strict=True)
        ):
            raise SignatureMismatchError(
                f"{data.source}: input {name!r} has per-sample shape {per_sample}, the model expects {want}",
                "the first axis is the sample axis; the rest must match the model input",
            )
        arr = _cast(arr, spec.dtype, name, data.source)
        fixed[name] = arr
    return Dataset(fixed, data.labels, data.source)


_SAFE_CASTS = {("float64", "float32"), ("float16", "float32"), ("int32", "int64"), ("int64", "int32"),
               ("uint8", "float32"), ("bool", "bool")}


def _cast(arr: np.ndarray, dtype: str, name: str, source: str) -> np.ndarray:
    if str(arr.dtype) == dtype:
        return arr
    if (str(arr.dtype), dtype) in _SAFE_CASTS:
        if dtype == "int32" and arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise SignatureMismatchError(f"{source}: input {name!r} has values outside int32")
        return np.ascontiguousarray(arr.astype(dtype))
    raise SignatureMismatchError(
        f"{source}: input {name!r} has dtype {arr.dtype}, the model expects {dtype}",
        f"save it as {dtype}",
    )



