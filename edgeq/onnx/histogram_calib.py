"""Histogram calibration (entropy, percentile) run by edgeq instead of inside ``quantize_static``, written as ORT's
calibration cache.

Two reasons to run ORT's calibrator here:

- **Enough bins for entropy.** ``quantize_static`` runs the entropy calibrator with 128 histogram bins and 128
  quantized bins, which leaves one candidate threshold, the full range: its "entropy" ranges equal minmax's
  (EfficientNet-Lite1: identical models). edgeq asks for :data:`ENTROPY_BINS`, so the KL search can clip.
- **Tensors that are all but zero.** ORT's ``HistogramCollector`` builds ``np.histogram`` bins over the tensor's own
  range. When a tensor's largest magnitude is a deep float32 denormal (about 1e-41 or less: seen on a 12-layer
  relative-position encoder), the bin edges cannot be distinct and numpy raises "Too many bins for data range.
  Cannot create 512 finite-sized bins", which killed the whole quantization. :class:`_FlushingCollector` hands ORT
  such an array (every magnitude below the smallest normal float32) as zeros: it quantizes to zero either way (its
  scale would be denormal). Every other array reaches ORT unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np

# Entropy's histogram: enough bins that the KL search over 128 quantized bins has thresholds to choose from.
ENTROPY_BINS = 512
_TINY = np.finfo(np.float32).tiny  # the smallest normal float32


class CalibrationReader(Protocol):
    """ORT's ``CalibrationDataReader`` as edgeq's readers implement it (edgeq.onnx.quantize.DatasetReader)."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...

    def rewind(self) -> None: ...


def _flushed(arrays: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in arrays.items():
        if isinstance(value, list):
            out[name] = [_flush(a) for a in value]
        else:
            out[name] = _flush(value)
    return out


def _flush(a: object) -> object:
    """An array whose every magnitude is below the smallest normal float32, as zeros; any other array unchanged (so
    every tensor ORT could bin before gets the same histogram, to the bit)."""
    if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating) and a.size and np.nanmax(np.abs(a)) < _TINY:
        return np.zeros_like(a)
    return a


def histogram_ranges(src: Path, reader: CalibrationReader, cache: Path, op_types: list[str] | None, tmp: Path,
                     method: Literal["entropy", "percentile"], percentile: float = 99.999) -> None:
    """Activation ranges of SRC over READER by ORT's entropy (KL, TensorRT-style) or percentile calibrator,
    written as ORT's calibration cache; READER is rewound afterwards."""
    # heavy: onnxruntime, only where a model is quantized or run
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        HistogramCollector,
        create_calibrator,
        save_tensors_data,
    )

    class _FlushingCollector(HistogramCollector):  # type: ignore[misc]  # onnxruntime ships no type hints
        def collect(self, name_to_arr: dict[str, object]) -> None:
            super().collect(_flushed(name_to_arr))

    extra: dict[str, float]
    if method == "entropy":
        kind, extra = CalibrationMethod.Entropy, {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    else:  # what quantize_static passes for CalibPercentile
        kind, extra = CalibrationMethod.Percentile, {"percentile": percentile}
    calibrator = create_calibrator(src, op_types, augmented_model_path=str(tmp / f"{method}.augmented.onnx"),
                                   calibrate_method=kind, extra_options=extra)
    calibrator.collector = _FlushingCollector(
        method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
        scenario=calibrator.scenario)
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    reader.rewind()
