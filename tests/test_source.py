"""Model references: every way a MODEL argument can be wrong gives a typed error with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.errors import ArtifactError, ModelSourceError
from edgeq.source import load_source

FIX = Path(__file__).resolve().parent / "fixture_models.py"


def test_factory_module_and_file_refs() -> None:
    src = load_source("edgeq.zoo.digits:digits_cnn")
    assert src.kind == "factory" and src.input_names == ["image"] and len(src.sha256) == 64
    src = load_source(f"{FIX}:two_inputs_with_example")
    assert src.input_names == ["left", "right"]
    assert [s.shape for s in src.declared_signature] == [("batch", 3), ("batch", 3)]


@pytest.mark.parametrize(
    ("ref", "err", "message"),
    [
        ("does/not/exist.onnx", ModelSourceError, "model file not found"),
        ("does/not/exist.pt2", ModelSourceError, "model file not found"),
        ("no_such_package_xyz.models:build", ModelSourceError, "cannot import 'no_such_package_xyz.models'"),
        ("edgeq.zoo.digits:no_such_factory", ModelSourceError, "has no attribute 'no_such_factory'"),
        (f"{FIX}:NOT_CALLABLE", ModelSourceError, "is not callable"),
        (f"{FIX}:not_a_module", ModelSourceError, "returned a dict, not a torch.nn.Module"),
        (f"{FIX}:raises", ModelSourceError, "raised RuntimeError: checkpoint missing"),
        ("justaword", ModelSourceError, "model not found"),
    ],
)
def test_bad_refs(ref: str, err: type, message: str) -> None:
    with pytest.raises(err) as e:
        load_source(ref)
    assert message in e.value.cause
    assert e.value.hint or "not found" in e.value.cause


def test_corrupt_and_truncated_onnx(tmp_path: Path, digits_export) -> None:  # type: ignore[no-untyped-def]
    good = (digits_export.output / "model.fp32.onnx").read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good[: len(good) // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not an onnx model at all" * 10)
    for p in (trunc, garbage):
        with pytest.raises(ArtifactError, match="corrupt or truncated ONNX"):
            load_source(str(p))


def test_bad_pt2(tmp_path: Path) -> None:
    p = tmp_path / "m.pt2"
    p.write_bytes(b"definitely not a zip")
    with pytest.raises(ArtifactError, match="not a loadable ExportedProgram"):
        load_source(str(p))
