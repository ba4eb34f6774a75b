"""ONNX external data, confined: tensor files must sit in the model's own folder, as plain regular files.

An ``.onnx`` file can point its initializers at other files (``location`` in ``external_data``). Followed blindly
that reads any file on the machine (``/etc/shadow``, ``../../secret``), follows symlinks or hardlinks out of the
folder, and resolves relative to the current directory in some code paths. Here every location is checked
against the model's folder (resolved from the model's absolute path, never the cwd) before anything is read, and
the float model edgeq ships is written self-contained.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgeq.errors import ArtifactError

if TYPE_CHECKING:
    import onnx

_HINT = "keep the external data files next to the .onnx (plain files, no links), as onnx.save(..., " \
        "save_as_external_data=True) writes them"


def _external_entries(model: onnx.ModelProto) -> list[dict[str, str]]:
    graphs = [model.graph]
    entries: list[dict[str, str]] = []
    while graphs:
        g = graphs.pop()
        for t in g.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                entries.append({"tensor": t.name, **{e.key: e.value for e in t.external_data}})
        for node in g.node:
            for attr in node.attribute:
                if attr.g is not None and len(attr.g.node):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    return entries


def check_external_data(model: onnx.ModelProto, model_path: Path) -> list[Path]:
    """Validate every external-data reference of ``model`` (loaded with ``load_external_data=False``)."""
    base = Path(os.path.abspath(model_path)).parent
    files = []
    for e in _external_entries(model):
        loc = e.get("location", "")
        where = f"{model_path}: tensor {e['tensor']!r} external data {loc!r}"
        if not loc or os.path.isabs(loc) or "\\" in loc or any(p in ("", ".", "..") for p in loc.split("/")) \
                or "/" in loc:
            raise ArtifactError(f"{where} is outside the model's folder", _HINT)
        p = base / loc
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            raise ArtifactError(f"{where}: file not found next to the model", _HINT) from None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{where} is a symbolic link or not a regular file", _HINT)
        if st.st_nlink > 1:
            raise ArtifactError(f"{where} is a hard link (it could be any file on the machine)", _HINT)
        offset, length = int(e.get("offset", 0) or 0), int(e.get("length", 0) or 0)
        if offset < 0 or length < 0 or offset + length > st.st_size:
            raise ArtifactError(f"{where}: offset {offset} + length {length} exceed the file's {st.st_size} bytes",
                                _HINT)
        files.append(p)
    return files


def write_self_contained(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, pulling confined external data inside the file."""
    model = onnx.load(str(src), load_external_data=False)
    if not check_external_data(model, src):
        shutil.copyfile(src, dst)
        return
    onnx.load_external_data_for_model(model, str(Path(os.path.abspath(src)).parent))
    onnx.save(model, str(dst))
