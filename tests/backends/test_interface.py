"""Both formats behind one backend interface; .pte refuses 16-bit nodes instead of ignoring them."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgeq
from edgeq.backends.base import FormatBackend, format_names, get_backend
from edgeq.errors import UsageError
from tests.conftest import DIGITS_MODEL, listing


def test_every_format_implements_the_interface() -> None:
    assert format_names() == ["onnx", "pte"]
    for name in format_names():
        backend = get_backend(name)
        assert isinstance(backend, FormatBackend) and backend.name == name
        assert callable(backend.load_runner())
    with pytest.raises(UsageError, match="format 'tflite' is not available"):
        get_backend("tflite")


def test_pte_refuses_16_bit_nodes_before_any_work(tmp_path: Path, digits_small: tuple[Path, Path]) -> None:
    calib, ev = digits_small
    quant = edgeq.QuantOptions(int16_activation_nodes=("/conv1/Conv", "/fc/Gemm"))
    before = listing(tmp_path)
    with pytest.raises(UsageError, match="--format pte cannot keep nodes at 16 bits") as e:
        edgeq.export(DIGITS_MODEL, calib=str(calib), eval=str(ev), formats="onnx,pte", quant=quant,
                     output=tmp_path / "out")
    assert "/conv1/Conv, /fc/Gemm" in e.value.cause and "--format onnx" in e.value.hint
    assert listing(tmp_path) == before  # refused before the ONNX build started: nothing written
