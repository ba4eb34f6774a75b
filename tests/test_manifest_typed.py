"""The typed manifest: a real export's edgeq.json reads into :class:`Manifest` and writes back to the same bytes
(signatures and ``edgeq check`` hash them); a tampered file fails with ManifestError naming the key."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgeq.errors import ManifestError
from edgeq.manifest import MANIFEST_NAME, FileEntry, Manifest, read_manifest, write_manifest


def _text(m: Manifest) -> str:
    return json.dumps(m.to_json(), indent=2, sort_keys=False) + "\n"


def test_a_real_export_round_trips_to_the_same_bytes(digits_export) -> None:  # type: ignore[no-untyped-def]
    out: Path = digits_export.output
    m = read_manifest(out)
    assert Manifest.from_json(m.to_json()) == m
    assert _text(m) == (out / MANIFEST_NAME).read_text()
    # the typed sections hold what the file says
    raw = json.loads((out / MANIFEST_NAME).read_text())
    assert m.target.name == raw["target"]["name"] == "x86-64" and m.target.features == tuple(raw["target"]["features"])
    assert m.source.ref == raw["source"]["ref"] and m.tool.edgeq_version == raw["edgeq_version"]
    assert m.validation_data.reference.kind == raw["validation_data"]["reference"]["kind"]
    assert m.files is not None and {f.path for f in m.files} >= {"report.md", "report.html"}
    assert m.passed == digits_export.passed and [a.name for a in m.artifact_list()] == \
        [a["name"] for a in raw["artifacts"]]
    assert list(m.to_json()) == list(raw)  # key order too


def test_writing_a_manifest_read_back_keeps_its_bytes(tmp_path: Path, digits_export) -> None:  # type: ignore[no-untyped-def]
    src: Path = digits_export.output
    (tmp_path / MANIFEST_NAME).write_bytes((src / MANIFEST_NAME).read_bytes())
    for rel in ("model.fp32.onnx", "model.int8.onnx"):  # write_manifest reads each runnable file's I/O if missing
        (tmp_path / rel).write_bytes((src / rel).read_bytes())
    m = read_manifest(tmp_path)
    written = write_manifest(m, tmp_path)
    assert written == m
    assert (tmp_path / MANIFEST_NAME).read_bytes() == (src / MANIFEST_NAME).read_bytes()


def test_a_section_added_lands_where_a_dict_assignment_put_it(digits_export) -> None:  # type: ignore[no-untyped-def]
    m = read_manifest(digits_export.output)
    swept = replace(m, sweep={"pick": None}, verdict={"passed": False, "failures": ["x"]})
    keys = list(swept.to_json())
    assert keys[-1] == "sweep" and keys[:-1] == list(m.to_json())  # after "files", the verdict in its place
    resealed = replace(m, files=(FileEntry("report.md", 1, "0" * 64),))
    assert list(resealed.to_json()) == list(m.to_json())
    with_search = m.with_records({"search_pte": {"met": True}})
    assert list(with_search.to_json())[-1] == "search_pte" and with_search.search_pte == {"met": True}


def _set(path: list[Any], value: object) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        node: Any = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set(["schema_version"], 2), "schema_version 2 is not supported"),
    (_set(["schema"], "other.manifest"), "not an edgeq manifest"),
    (_set(["target", "ram_mb"], "lots"), "target: 'ram_mb' must be an integer"),
    (_set(["target", "features"], "neon"), "target: 'features' must be a list of strings"),
    (_set(["source", "ref"], 7), "source: 'ref' must be a string"),
    (_set(["validation_data", "samples"], "150"), "validation_data: 'samples' must be an integer"),
    (_set(["validation_data", "reference", "sha256"], None), "validation_data.reference: 'sha256' must be a string"),
    (_set(["dependencies", "torch"], 2), "'dependencies.torch' must be a version string"),
    (_set(["files", 0, "bytes"], "1"), "files: 'bytes' must be an integer"),
    (_set(["sensitivity"], [1, 2]), "sensitivity: 'sensitivity\\[0\\]' must be an object"),
    (_set(["search"], []), "optional key 'search' must be a dict"),
    (_set(["budget"], None), "'budget' must be an object"),
    (_set(["created"], 0), "'created' must be a string"),
    (_set(["my_notes"], {}), "unknown key 'my_notes'"),
])
def test_a_tampered_manifest_names_the_key(digits_export, edit: Callable[[dict[str, Any]], None],  # type: ignore[no-untyped-def]
                                           message: str) -> None:
    raw = json.loads((digits_export.output / MANIFEST_NAME).read_text())
    raw.setdefault("sensitivity", [])
    broken = copy.deepcopy(raw)
    edit(broken)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(broken)


def test_reading_a_tampered_file_fails_with_its_path(tmp_path: Path, digits_export) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads((digits_export.output / MANIFEST_NAME).read_text())
    raw["target"]["abi"] = None
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"edgeq.json: target: 'abi' must be a string"):
        read_manifest(tmp_path)
