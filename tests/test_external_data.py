"""ONNX external data is read only from plain files in the model's own folder, whatever the cwd."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.errors import ArtifactError
from edgeq.external_data import write_self_contained
from edgeq.source import load_source


def model_with_external_data(folder: Path) -> Path:
    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(folder / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    return folder / "m.onnx"


def relocate(path: Path, location: str) -> None:
    m = onnx.load(str(path), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save(m, str(path))


def test_loads_and_ships_self_contained_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = model_with_external_data(tmp_path / "models")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    rel = os.path.relpath(src)
    s = load_source(rel)
    assert s.onnx_file().is_absolute()
    write_self_contained(s.onnx_file(), tmp_path / "out.onnx")
    m = onnx.load(str(tmp_path / "out.onnx"))  # no external file needed any more
    assert numpy_helper.to_array(m.graph.initializer[0])[7, 7] == 63.0


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "sub/m.data"])
def test_locations_outside_the_folder_are_refused(tmp_path: Path, location: str) -> None:
    src = model_with_external_data(tmp_path / "models")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1024)
    relocate(src, location)
    with pytest.raises(ArtifactError, match="outside the model's folder"):
        load_source(str(src))


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_linked_external_data_is_refused(tmp_path: Path, link: str) -> None:
    src = model_with_external_data(tmp_path / "models")
    data = src.parent / "m.data"
    outside = tmp_path / "outside.bin"
    data.rename(outside)
    (os.symlink if link == "symlink" else os.link)(outside, data)
    with pytest.raises(ArtifactError, match="link"):
        load_source(str(src))


def test_offsets_beyond_the_file_are_refused(tmp_path: Path) -> None:
    src = model_with_external_data(tmp_path / "models")
    with (src.parent / "m.data").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(ArtifactError, match="exceed the file"):
        load_source(str(src))
