"""Fuzzing the parsers of user-controlled input: every case ends in a result or a typed EdgeqError, never a
traceback. Hypothesis runs derandomized with a fixed example budget, so the suite is the same on every run."""

from __future__ import annotations

import copy
import io
import json
import tomllib
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeq.data import load_dataset
from edgeq.errors import EdgeqError
from edgeq.hashing import sha256_file
from edgeq.integrity import audit, seal
from edgeq.manifest import FileRef, Manifest, Source, TargetInfo, Tool, ValidationData, validate_manifest
from edgeq.targets import load_target, parse_target, targets_dir

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
OUTCOMES: Counter[str] = Counter()

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
                           | st.text(max_size=12), lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=6)


def outcome(fn: Any) -> str:
    """'ok' or 'handled' (typed error); anything else propagates and fails the test with its traceback."""
    try:
        fn()
    except EdgeqError:
        return "handled"
    return "ok"


npy_dtypes = st.sampled_from(["<f4", "<f8", "<i8", "<u1", "|b1", "<f2", "<c8", "|O", "<U3", "|V4"])


@SETTINGS
@given(dtype=npy_dtypes, shape=st.lists(st.integers(0, 1 << 33), min_size=0, max_size=3),
       payload=st.binary(max_size=64), labels=st.one_of(st.none(), st.lists(
           st.floats(allow_nan=True) | st.integers(-5, 5), min_size=0, max_size=6)),
       truncate=st.integers(0, 200))
def test_npz_files(tmp_path_factory: pytest.TempPathFactory, dtype: str, shape: list[int], payload: bytes,
                   labels: list[Any] | None, truncate: int) -> None:
    d = tmp_path_factory.mktemp("npz")
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    with zipfile.ZipFile(d / "d.npz", "w") as z:
        z.writestr("x.npy", head.getvalue() + payload)
        if labels is not None:
            buf = io.BytesIO()
            np.save(buf, np.array(labels))
            z.writestr("labels.npy", buf.getvalue())
    if truncate:
        raw = (d / "d.npz").read_bytes()
        (d / "d.npz").write_bytes(raw[: max(0, len(raw) - truncate)])
    loaded: list[Any] = []
    OUTCOMES["npz " + outcome(lambda: loaded.append(load_dataset(d / "d.npz")))] += 1
    for ds in loaded:  # whatever is accepted is plain numbers, and labels are int64 class ids
        assert all(a.dtype.kind not in "OUV" for a in ds.inputs.values())
        assert ds.labels is None or (ds.labels.dtype == np.int64 and (ds.labels >= 0).all())


def _target_text() -> dict[str, Any]:
    return tomllib.loads((targets_dir() / "raspberry-pi-5.toml").read_text())


@SETTINGS
@given(section=st.sampled_from(["", "cpu", "formats.onnx", "formats.executorch", "validation"]), key=st.text(max_size=12),
       value=json_values, drop=st.booleans(), garbage=st.binary(max_size=16))
def test_target_toml(section: str, key: str, value: Any, drop: bool, garbage: bytes) -> None:
    raw = _target_text()
    table = raw
    for part in filter(None, section.split(".")):  # "formats.onnx": the [formats.onnx] table
        table = table[part]
    existing = sorted(table)
    name = existing[len(key) % len(existing)] if key == "" or drop else key
    if drop:
        table.pop(name, None)
    else:
        table[name] = value
    text = _dumps(raw) + garbage.decode("latin-1")
    parsed: list[Any] = []
    OUTCOMES["toml " + outcome(lambda: parsed.append(parse_target(text, "fuzz.toml")))] += 1
    for t in parsed:  # an accepted profile is fully typed: the fuzzed value survived only where it is valid
        assert isinstance(t.name, str) and isinstance(t.ram_mb, int) and isinstance(t.passes, tuple)


def _dumps(d: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer (values as JSON literals where TOML agrees; None becomes an invalid token on purpose)."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{json.dumps(k)} = {json.dumps(v) if v is not None else 'nil'}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        out += f"[{prefix}{json.dumps(k)}]\n" + _dumps(v, f"{prefix}{json.dumps(k)}.")
    return out


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("manifest")
    (out / "validation").mkdir()
    np.savez(out / "validation/inputs.npz", x=np.zeros((2, 3), np.float32))
    np.savez(out / "validation/reference.npz", output=np.zeros((2, 4), np.float32))
    (out / "model.int8.onnx").write_bytes(b"\x08\x0a")
    (out / "report.md").write_text("# report\n")
    m = seal(Manifest(
        tool=Tool.now(), source=Source("m", "factory", "0"), target=TargetInfo.of(load_target("x86-64")), config={},
        budget={}, signature={"inputs": [], "outputs": []},
        validation_data=ValidationData(FileRef("validation/inputs.npz", sha256_file(out / "validation/inputs.npz")),
                                       FileRef("validation/reference.npz",
                                               sha256_file(out / "validation/reference.npz"), "float outputs"),
                                       samples=2, has_labels=False, source="fuzz"),
        passes=(), verdict={"passed": True, "failures": []},
        artifacts=({"name": "onnx-int8", "path": "model.int8.onnx", "format": "onnx", "precision": "int8",
                    "role": "candidate", "bytes": 2, "sha256": sha256_file(out / "model.int8.onnx"),
                    "quantization": None, "details": {}, "validations": []},)), out).to_json()
    validate_manifest(m)
    audit(Manifest.from_json(m), out)
    return out, m


PATHS = [["artifacts", 0, "path"], ["artifacts", 0, "role"], ["artifacts", 0, "sha256"], ["artifacts", 0, "name"],
         ["artifacts", 0], ["artifacts"], ["validation_data", "inputs", "path"], ["validation_data", "reference"],
         ["validation_data"], ["files", 0, "path"], ["files", 0, "sha256"], ["files"], ["schema_version"],
         ["budget"], ["artifacts", 0, "validations"]]


@SETTINGS
@given(where=st.sampled_from(PATHS), value=json_values | st.sampled_from(
    ["../x", "/etc/passwd", "validation/../model.int8.onnx", "report.md", "a\x00b", "model.int8.onnx/"]))
def test_manifest_fields(sealed: tuple[Path, dict[str, Any]], where: list[Any], value: Any) -> None:
    out, m0 = sealed
    m = copy.deepcopy(m0)
    node: Any = m
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value

    def run() -> None:
        validate_manifest(m)
        audit(Manifest.from_json(m), out)

    if outcome(run) == "ok":
        OUTCOMES["manifest ok"] += 1
        root = out.resolve()  # an accepted manifest only names files inside its folder
        paths = [a["path"] for a in m["artifacts"]] + [m["validation_data"][k]["path"] for k in ("inputs", "reference")]
        assert all((out / p).resolve().is_relative_to(root) for p in paths)
    else:
        OUTCOMES["manifest handled"] += 1


def test_zz_report_counts() -> None:
    """Printed with -s; the table in docs/explanation/security.md comes from these counts (run after the three tests above)."""
    print("\nfuzz outcomes:", dict(sorted(OUTCOMES.items())))
    assert sum(OUTCOMES.values()) >= 3 * 60 or not OUTCOMES
